//! In-process targets: configuration and policy TOML, SKILL.md front matter, schedules and
//! cron phrases with the next fire time, delivery targets, job specs, and the `a{sv}` codecs of
//! the bus. Each must never panic; each error must be clear and name what it is about.

use std::path::Path;

use talaria_bus::VariantDict;
use talaria_fuzz::{Case, Fuzzer, clear_error};
use zbus::OwnedVariant;

const CONFIG: &str = r#"# talaria config
[model]
name = "gpt-4o-mini"
provider = "openai"
base_url = "https://api.openai.com/v1"
api_key_env = "OPENAI_API_KEY"
context_length = 128000
fallback = ["anthropic/claude-sonnet-4"]

[memory]
memory_char_limit = 2200
user_char_limit = 1375

[skills]
external_dirs = ["/srv/skills"]

[providers.local]
base_url = "http://127.0.0.1:8080/v1"
api = "openai"
"#;

const TOML_TOKENS: &[&[u8]] = &[
    b"[",
    b"]",
    b"[[",
    b"]]",
    b"=",
    b"\"",
    b"'",
    b"\"\"\"",
    b"'''",
    b"{",
    b"}",
    b",",
    b".",
    b"\n",
    b"#",
    b"\\u0000",
    b"\\",
    b"true",
    b"nan",
    b"inf",
    b"1979-05-27T07:32:00Z",
    b"[model]\n",
    b"[providers.x]\n",
    b"[[x]]\n",
    b"a.b.c = 1\n",
    b"x = { a = [ { b = 1 } ] }\n",
    b"name = \"\"\n",
    b"base_url = \"ftp://x\"\n",
    b"api_key_env = \"A=B\"\n",
];

#[test]
fn config_toml() {
    let mut fuzz = Fuzzer::new(
        "config_toml",
        &[CONFIG.as_bytes(), b"[model]\nname = \"x\"\n", b""],
        TOML_TOKENS,
        3000,
    );
    fuzz.run(|case| {
        let text = case.text();
        match talaria_core::Config::from_toml_str(&text, "fuzz/config.toml") {
            Ok(config) => {
                // A config that loads must survive the operations `talaria config` runs on it.
                let _ = config.to_redacted_toml();
                for key in [
                    "model.name",
                    "model.base_url",
                    "memory.user_char_limit",
                    "x",
                ] {
                    let _ = config.get(key);
                }
                Ok(())
            }
            Err(e) => clear_error(&e.to_string(), case.bytes.len(), &["fuzz/config.toml"]),
        }
    });
}

#[test]
fn config_set_key() {
    // `talaria config set KEY VALUE`: the key and the value are the fuzzed parts.
    let mut fuzz = Fuzzer::new(
        "config_set_key",
        &[
            b"model.name\ngpt-4o",
            b"memory.user_char_limit\n4096",
            b"model.fallback\n[\"a\", \"b\"]",
            b"providers.local.base_url\nhttp://127.0.0.1:1/v1",
        ],
        TOML_TOKENS,
        150,
    );
    fuzz.run(|case| {
        let text = case.text();
        let (key, value) = text.split_once('\n').unwrap_or((&text, ""));
        match talaria_core::config::set_key(CONFIG, key, value, "fuzz/config.toml") {
            Ok(edited) => {
                // An edit that succeeded must leave a file that loads (or fails clearly).
                match talaria_core::Config::from_toml_str(&edited, "fuzz/config.toml") {
                    Ok(_) => Ok(()),
                    Err(e) => clear_error(&e.to_string(), edited.len(), &["fuzz/config.toml"]),
                }
            }
            Err(e) => clear_error(&e.to_string(), case.bytes.len(), &[]),
        }
    });
}

#[test]
fn policy_toml() {
    let dir = tempfile::tempdir().unwrap();
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    for entry in
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies")).unwrap()
    {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            seeds.push(std::fs::read(&path).unwrap());
        }
    }
    assert!(seeds.len() >= 3, "the shipped policies are the seeds");
    seeds.push(b"[tools]\nterminal = \"read-only\"\nread_file = \"fuzzed\"\n".to_vec());
    seeds.push(b"inherits = \"workspace-write\"\n[network]\nmode = \"allow\"\nallow = [\"example.org:443\"]\n".to_vec());
    let seed_refs: Vec<&[u8]> = seeds.iter().map(Vec::as_slice).collect();
    let mut tokens = TOML_TOKENS.to_vec();
    tokens.extend_from_slice(&[
        b"inherits = \"fuzzed\"\n",
        b"${workspace}",
        b"${home}/../..",
        b"/",
        b"**",
        b"[backend.landlock]\n",
        b"[backend.nope]\n",
        b"[approval]\n",
        b"[[approval.rule]]\n",
        b"pattern = \"(\"\n",
        b"match = [\"rm -rf /\"]\n",
        b"[limits]\nmemory = \"1Q\"\n",
        b"wall_time = \"-5s\"\n",
    ]);
    let schemas = talaria_executor::backends::schemas();
    let mut fuzz = Fuzzer::new("policy_toml", &seed_refs, &tokens, 300);
    fuzz.run(|case| {
        // Alternate between a profile file and the tools table, over the shipped profiles.
        let file = if case.index % 3 == 2 {
            "tools.toml"
        } else {
            "fuzzed.toml"
        };
        let path = dir.path().join(file);
        std::fs::write(&path, &case.bytes).unwrap();
        let result = talaria_policy::PolicySet::load(
            &[
                talaria_policy::PolicySource::Shipped,
                talaria_policy::PolicySource::Dir(dir.path().to_owned()),
            ],
            &schemas,
        );
        std::fs::remove_file(&path).unwrap();
        match result {
            Ok(set) => {
                // A set that loads resolves every profile without panicking.
                let names: Vec<String> = set.names().map(str::to_owned).collect();
                for name in names {
                    let _ = set.profile(&name);
                }
                Ok(())
            }
            Err(errors) => clear_error_long(&errors.to_string(), case.bytes.len(), file),
        }
    });
}

/// Policy errors list every problem found, one per line: each line stays short and the whole
/// names the file.
fn clear_error_long(message: &str, input_len: usize, file: &str) -> Result<(), String> {
    if !message.contains(file) {
        return Err(format!("the errors do not name {file}: {message}"));
    }
    for line in message.lines() {
        clear_error(line, input_len, &[]).or_else(|e| {
            if line.trim().is_empty() {
                Ok(())
            } else {
                Err(e)
            }
        })?;
    }
    Ok(())
}

const SKILL: &str = "---\nname: deploy-app\ndescription: Deploy the app with colmena when the \
                     user asks to ship.\nversion: 1.0.0\nauthor: hermes\nlicense: MIT\n\
                     metadata:\n  talaria:\n    profile: workspace-write\n    tags: [deploy, nix]\n\
                     ---\n# Deploy\n\nRun `colmena apply`.\n";

#[test]
fn skill_front_matter() {
    let tokens: &[&[u8]] = &[
        b"---\n",
        b"\n---\n",
        b": ",
        b"- ",
        b"  ",
        b"\t",
        b"&a ",
        b"*a",
        b"!!binary ",
        b"!!python/object ",
        b"<<: *a\n",
        b"? ",
        b"|\n",
        b">-\n",
        b"{",
        b"}",
        b"[",
        b"]",
        b"'",
        b"\"",
        b"\\x00",
        b"%YAML 1.2\n",
        b"name: ",
        b"description: ",
        b"metadata:\n  talaria:\n    profile: ",
        b"a: &a [*a, *a, *a, *a]\n",
        b"~",
        b"null",
        b"0x",
        b".inf",
    ];
    let mut fuzz = Fuzzer::new(
        "skill_front_matter",
        &[
            SKILL.as_bytes(),
            b"---\nname: notes\ndescription: Keep notes tidy.\n---\nUse headings.\n",
        ],
        tokens,
        3000,
    );
    fuzz.run(|case| {
        let text = case.text();
        let _ = talaria_skills::validate::split_front_matter(&text);
        for mode in [talaria_skills::Mode::Strict, talaria_skills::Mode::Lenient] {
            let report = talaria_skills::validate::validate_skill_md(&text, "deploy-app", mode);
            for problem in report.errors() {
                clear_error(&problem.to_string(), case.bytes.len(), &[])?;
            }
        }
        Ok(())
    });
}

#[test]
fn schedule_phrases() {
    use jiff::Timestamp;
    use talaria_scheduler::schedule::{Schedule, time_zone};
    let tokens: &[&[u8]] = &[
        b"*", b"*/", b"/", b"-", b",", b" ", b"L", b"W", b"#", b"?", b"0", b"59", b"60", b"24",
        b"31", b"32", b"12", b"13", b"7", b"8", b"every ", b"s", b"min", b"hours", b"days",
        b"MON-FRI", b"JAN", b"DEC-JAN", b"SUN", b"@daily", b"@reboot", b"\t",
    ];
    let zones = [
        "UTC",
        "Europe/Paris",
        "America/New_York",
        "Australia/Lord_Howe",
        "Pacific/Apia",
        "Asia/Kathmandu",
    ];
    let mut fuzz = Fuzzer::new(
        "schedule_phrases",
        &[
            b"0 8 * * *",
            b"*/15 9-17 * * MON-FRI",
            b"30 2 29 2 *",
            b"0 0 1,15 * SUN",
            b"every 90 minutes",
            b"every 2 days",
            b"every 45s",
            b"59 23 31 12 *",
        ],
        tokens,
        4000,
    );
    let instants = [
        Timestamp::UNIX_EPOCH,
        Timestamp::from_second(1_798_675_200).unwrap(),
        Timestamp::MAX,
        Timestamp::MIN,
    ];
    fuzz.run(|case: &Case| {
        let text = case.text();
        match text.parse::<Schedule>() {
            Ok(schedule) => {
                let tz = time_zone(zones[case.index as usize % zones.len()]).unwrap();
                for anchor in instants {
                    for after in instants {
                        // Walking forward a few fires catches arithmetic at the edges of time.
                        let mut at = after;
                        for _ in 0..3 {
                            match schedule.next_after(anchor, at, &tz) {
                                Some(next) if next > at => at = next,
                                Some(next) => {
                                    return Err(format!(
                                        "{text:?}: next fire {next} is not after {at}"
                                    ));
                                }
                                None => break,
                            }
                        }
                    }
                }
                Ok(())
            }
            Err(e) => clear_error(&e.to_string(), case.bytes.len(), &[]),
        }
    });
}

/// A job spec from text lines `key=value` (or `key:t=…`, `key:b=…`, `key:as=a,b` for other
/// value types): what `Scheduler1.CreateJob` receives.
fn dict_from_lines(text: &str) -> VariantDict {
    let mut dict = VariantDict::new();
    for line in text.lines() {
        let (key, value) = line.split_once('=').unwrap_or((line, ""));
        let (key, kind) = key.split_once(':').unwrap_or((key, "s"));
        let variant = match kind {
            "t" => value.parse::<u64>().ok().map(OwnedVariant::from),
            "b" => Some(OwnedVariant::from(value == "true")),
            "i" => value.parse::<i32>().ok().map(OwnedVariant::from),
            "as" => OwnedVariant::try_from(zbus::Variant::from(
                value.split(',').map(str::to_owned).collect::<Vec<_>>(),
            ))
            .ok(),
            _ => Some(OwnedVariant::from(zbus::Str::from(value.to_owned()))),
        };
        if let Some(variant) = variant {
            dict.insert(key.to_owned(), variant);
        }
    }
    dict
}

#[test]
fn job_specs_and_delivery_targets() {
    let tokens: &[&[u8]] = &[
        b"\nname=",
        b"\nschedule=",
        b"\nprompt=",
        b"\ndeliver_to=",
        b"\ntz=",
        b":t=",
        b":b=",
        b":as=",
        b":i=",
        b"file:",
        b"file:/",
        b"/../",
        b"/./",
        b"//",
        b"api:",
        b"telegram:",
        b"Europe/Paris",
        b"../../etc/passwd",
        b"UTC+99",
        b"\0",
    ];
    let state = tempfile::tempdir().unwrap();
    let now = jiff::Timestamp::from_second(1_798_675_200).unwrap();
    let mut fuzz = Fuzzer::new(
        "job_specs",
        &[
            b"name=digest\nschedule=0 8 * * *\nprompt=write the digest\ndeliver_to=api:digest\ntz=Europe/Paris",
            b"name=log\nschedule=every 2 hours\nprompt=check\ndeliver_to=file:/var/tmp/log.md",
            b"name=x\nschedule=every 1 days\nprompt=p",
        ],
        tokens,
        3000,
    );
    fuzz.run(|case| {
        let text = case.text();
        let dict = dict_from_lines(&text);
        if let Err(e) = talaria_scheduler::spec::new_job(&dict, 1000, "UTC", state.path(), now) {
            clear_error(&e.to_string(), case.bytes.len(), &[])?;
        }
        for line in text.lines() {
            if let Err(e) = talaria_scheduler::delivery::Target::parse(line) {
                clear_error(&e.to_string(), case.bytes.len(), &[])?;
            }
        }
        Ok(())
    });
}

#[test]
fn executor_request_dicts() {
    use talaria_bus::exec::wire;
    let tokens: &[&[u8]] = &[
        b"\ntool=",
        b"\nsession=",
        b"\nworkspace=",
        b"\nsurface=",
        b"\ntool_profile=",
        b"\nprofile=",
        b"\nprofile_approved:b=",
        b"\nargv:as=",
        b"\ncwd=",
        b"\ncommand_line=",
        b"\ntimeout_ms:t=",
        b"\noutput_limit:t=",
        b"\nrun_id=",
        b"\npath=",
        b":t=",
        b":s=",
        b":as=",
        b"18446744073709551615",
        b"\0",
        b"owner",
        b"webhook",
        b"api",
        b"/",
        b"..",
    ];
    let mut fuzz = Fuzzer::new(
        "executor_request_dicts",
        &[
            b"tool=terminal\nsession=20261207-120000-abcdef\nworkspace=/srv/w\nsurface=owner\n\
              tool_profile=workspace-write\nargv:as=/bin/sh,-c,echo hi\ncwd=/srv/w\n\
              command_line=echo hi\ntimeout_ms:t=5000\noutput_limit:t=65536",
            b"tool=skill_run\nsession=20261207-120000-abcdef\nworkspace=/srv/w\nsurface=api\n\
              profile=networked\nprofile_approved:b=true\nargv:as=python3,run.py\ncwd=/srv/w",
        ],
        tokens,
        3000,
    );
    fuzz.run(|case| {
        let dict = dict_from_lines(&case.text());
        if let Err(e) = wire::decode_origin(&dict) {
            clear_error(&e.to_string(), case.bytes.len(), &[])?;
        }
        match wire::decode_command(&dict) {
            Ok((origin, spec)) => {
                // What decodes must encode again (or fail cleanly on a NUL) and decode to the
                // same request: the codec loses nothing on the way.
                match wire::encode_command(&origin, &spec) {
                    Ok(encoded) => {
                        let (origin2, spec2) = wire::decode_command(&encoded)
                            .map_err(|e| format!("re-decoding failed: {e}"))?;
                        // "No timeout" (Duration::MAX) travels as u64::MAX ms: the same
                        // "as long as the profile allows" once decoded, not the same value.
                        let same =
                            |o: &talaria_bus::exec::ExecOrigin,
                             s: &talaria_bus::exec::CommandSpec| {
                                let mut s = s.clone();
                                s.timeout =
                                    s.timeout.min(std::time::Duration::from_millis(u64::MAX));
                                // An approval without a profile approves nothing and is
                                // not sent.
                                s.profile_approved &= s.profile.is_some();
                                format!("{o:?}{s:?}")
                            };
                        if same(&origin, &spec) != same(&origin2, &spec2) {
                            return Err(format!(
                                "the codec changed the request: {origin:?} {spec:?} became \
                                 {origin2:?} {spec2:?}"
                            ));
                        }
                        Ok(())
                    }
                    Err(e) => clear_error(&e.to_string(), case.bytes.len(), &[]),
                }
            }
            Err(e) => clear_error(&e.to_string(), case.bytes.len(), &[]),
        }
    });
}

#[test]
fn ids_and_names() {
    let mut fuzz = Fuzzer::new(
        "ids_and_names",
        &[
            b"20261207-120000-abcdef",
            b"owner",
            b"api",
            b"user:1000",
            b"assistant",
        ],
        &[b"-", b"_", b":", b"\0", b"../"],
        2000,
    );
    fuzz.run(|case| {
        let text = case.text();
        if let Err(e) = talaria_core::SessionId::parse(&text) {
            clear_error(&e.to_string(), case.bytes.len(), &[])?;
        }
        if let Err(e) = talaria_core::UserId::parse(&text) {
            clear_error(&e.to_string(), case.bytes.len(), &[])?;
        }
        let _ = talaria_core::Surface::from_wire(Some(&text));
        let _ = talaria_core::Role::parse(&text);
        let _ = talaria_bus::dict::check_text("field", &text);
        Ok(())
    });
}
