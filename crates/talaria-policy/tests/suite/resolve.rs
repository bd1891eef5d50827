//! Resolution to a SandboxSpec: variables, missing roots, env, limits, network, errors.

use std::path::PathBuf;
use std::time::Duration;

use talaria_policy::{PolicyError, PolicySet};
use talaria_sandbox::spec::NetworkRules;

use super::support::{Layout, PolicyDir};

fn load(text: &str) -> (PolicyDir, PolicySet) {
    let dir = PolicyDir::new(&[("p", text)]);
    let set = dir.load().unwrap_or_else(|e| panic!("{e}"));
    (dir, set)
}

const NS: &str = "[namespaces]\nuser = true\nmount = true\npid = true\nnet = true\n";

#[test]
fn substitutes_variables_and_drops_missing_roots() {
    let layout = Layout::new();
    std::fs::create_dir(layout.workspace.join("src")).unwrap();
    let (_dir, set) = load(&format!(
        r#"
[filesystem]
read = ["/usr", "${{workspace}}/src", "${{workspace}}/not-there", "/definitely/not/here", "${{talaria_home}}/skills"]
write = ["${{tmp}}", "${{workspace}}"]
protected = ["${{workspace}}/.git/hooks", "${{workspace}}/.git/config"]
{NS}"#
    ));
    let resolved = set.profile("p").unwrap().resolve(&layout.ctx()).unwrap();
    let fs = &resolved.spec.filesystem;
    assert_eq!(
        fs.read,
        [
            PathBuf::from("/usr").canonicalize().unwrap(),
            layout.workspace.join("src"),
            layout.talaria_home.join("skills"),
        ]
    );
    assert_eq!(fs.write, [layout.tmp.clone(), layout.workspace.clone()]);
    // Protected paths are kept even though neither exists.
    assert_eq!(
        fs.protected,
        [
            layout.workspace.join(".git/hooks"),
            layout.workspace.join(".git/config")
        ]
    );
    assert_eq!(resolved.spec.profile, "p");
    assert_eq!(resolved.spec.argv, ["ls", "-l"]);
    assert_eq!(resolved.spec.cwd, layout.workspace);
}

#[test]
fn symlinked_roots_are_resolved_to_real_paths() {
    let layout = Layout::new();
    let link = layout.root.path().join("ws-link");
    std::os::unix::fs::symlink(&layout.workspace, &link).unwrap();
    std::os::unix::fs::symlink(
        layout.workspace.join("gone"),
        layout.workspace.join("dangling"),
    )
    .unwrap();
    let (_dir, set) = load(&format!(
        "[filesystem]\nwrite = [\"${{workspace}}\", \"${{workspace}}/dangling\"]\nprotected = [\"${{workspace}}/.git/hooks\"]\n{NS}"
    ));
    let mut ctx = layout.ctx();
    ctx.workspace = link.clone();
    ctx.cwd = link;
    let resolved = set.profile("p").unwrap().resolve(&ctx).unwrap();
    assert_eq!(
        resolved.spec.filesystem.write,
        std::slice::from_ref(&layout.workspace)
    );
    assert_eq!(
        resolved.spec.filesystem.protected,
        [layout.workspace.join(".git/hooks")]
    );
    assert_eq!(resolved.spec.cwd, layout.workspace);
}

#[test]
fn env_is_pass_through_plus_set_only() {
    let layout = Layout::new();
    let (_dir, set) = load(
        "[filesystem]\nread = [\"${workspace}\"]\n[env]\npass = [\"PATH\", \"LANG\", \"TERM\", \"PATH\"]\nset = { PAGER = \"cat\", TMPDIR = \"${tmp}/t\", LANG = \"C\" }\n",
    );
    let mut ctx = layout.ctx();
    ctx.caller_env.push(("PATH".into(), "/later/wins".into()));
    let resolved = set.profile("p").unwrap().resolve(&ctx).unwrap();
    assert_eq!(
        resolved.spec.env,
        [
            ("PATH".to_owned(), "/later/wins".to_owned()),
            ("LANG".to_owned(), "C".to_owned()),
            ("PAGER".to_owned(), "cat".to_owned()),
            ("TMPDIR".to_owned(), format!("{}/t", layout.tmp.display())),
        ]
    );
    // TERM is not in the caller's environment; the API key and HOME are not passed.
    let names: Vec<&str> = resolved.spec.env.iter().map(|(k, _)| k.as_str()).collect();
    assert!(
        !names.contains(&"OPENAI_API_KEY") && !names.contains(&"HOME") && !names.contains(&"TERM")
    );
    let everything = format!("{:?}", resolved.spec);
    assert!(!everything.contains("sk-secret"));
}

#[test]
fn limits_become_numbers() {
    let layout = Layout::new();
    let (_dir, set) = load(
        "[filesystem]\nread = [\"${workspace}\"]\n[limits]\nwall_time = \"30s\"\ncpu_time = \"1h30m\"\nmemory = \"512MiB\"\ntasks = 64\nfile_size = \"10MB\"\nopen_files = 256\noutput = \"64KiB\"\n",
    );
    let r = set.profile("p").unwrap().resolve(&layout.ctx()).unwrap();
    assert_eq!(r.spec.limits.cpu_seconds, Some(5400));
    assert_eq!(r.spec.limits.memory_bytes, Some(512 << 20));
    assert_eq!(r.spec.limits.tasks, Some(64));
    assert_eq!(r.spec.limits.file_size_bytes, Some(10_000_000));
    assert_eq!(r.spec.limits.open_files, Some(256));
    assert_eq!(r.wall_time, Duration::from_secs(30));
    assert_eq!(r.output_bytes, 64 << 10);

    // Unset: no rlimit, and the caller's defaults for wall time and output.
    let (_dir, set) = load("[filesystem]\nread = [\"${workspace}\"]\n");
    let r = set.profile("p").unwrap().resolve(&layout.ctx()).unwrap();
    assert_eq!(
        r.spec.limits,
        talaria_sandbox::spec::ResourceLimits::default()
    );
    assert_eq!(r.wall_time, talaria_policy::DEFAULT_WALL_TIME);
    assert_eq!(r.output_bytes, talaria_policy::DEFAULT_OUTPUT_BYTES);
}

#[test]
fn network_modes_become_rules() {
    let layout = Layout::new();
    let (_dir, set) = load(
        "[filesystem]\nread = [\"${workspace}\"]\n[network]\nmode = \"allow\"\nallow = [\"b.example:443\", \"a.example:443\", \"127.0.0.1:8080\"]\n",
    );
    let r = set.profile("p").unwrap().resolve(&layout.ctx()).unwrap();
    assert_eq!(
        r.spec.network,
        NetworkRules::AllowTcp {
            ports: vec![443, 8080]
        }
    );

    let (_dir, set) = load(&format!(
        "[filesystem]\nread = [\"${{workspace}}\"]\n[network]\nmode = \"loopback\"\n{NS}"
    ));
    let r = set.profile("p").unwrap().resolve(&layout.ctx()).unwrap();
    assert_eq!(r.spec.network, NetworkRules::Loopback);
    assert!(r.spec.namespaces.net && r.spec.namespaces.user && r.spec.namespaces.pid);
}

#[test]
fn resolution_errors_are_clear() {
    let layout = Layout::new();
    let (_dir, set) = load("[filesystem]\nread = [\"${workspace}\"]\n");
    let p = set.profile("p").unwrap();

    let mut ctx = layout.ctx();
    ctx.workspace = layout.home.join("missing");
    assert_eq!(
        p.resolve(&ctx).unwrap_err().to_string(),
        format!(
            "profile `p`: workspace {} does not exist",
            ctx.workspace.display()
        )
    );

    let mut ctx = layout.ctx();
    ctx.cwd = layout.tmp.clone();
    assert_eq!(
        p.resolve(&ctx).unwrap_err(),
        PolicyError::Resolve {
            profile: "p".into(),
            message: format!("cwd {} is not inside a readable root", layout.tmp.display()),
        }
    );

    let mut ctx = layout.ctx();
    ctx.cwd = layout.workspace.join("nope");
    assert!(
        p.resolve(&ctx)
            .unwrap_err()
            .to_string()
            .ends_with("does not exist")
    );

    let mut ctx = layout.ctx();
    ctx.tmp = "scratch".into();
    assert_eq!(
        p.resolve(&ctx).unwrap_err().to_string(),
        "profile `p`: tmp scratch is not an absolute path"
    );

    let mut ctx = layout.ctx();
    ctx.argv.clear();
    assert_eq!(
        p.resolve(&ctx).unwrap_err().to_string(),
        "profile `p`: no command to run (argv is empty)"
    );
}
