//! Exit 125: specs the helper must refuse, with one line on stderr and nothing run.

use std::process::{Command, Stdio};

use super::support::{Case, HELPER, Outcome, base_features, namespace_features, probe};

#[track_caller]
fn assert_refused(out: &Outcome, reason: &str) {
    assert_eq!(
        out.code, 125,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    assert!(out.stdout.is_empty(), "something ran: {}", out.stdout);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "expected one line on stderr: {:?}",
        out.stderr
    );
    assert!(lines[0].starts_with("talaria-sandbox: "), "{}", lines[0]);
    assert!(
        lines[0].contains(reason),
        "{:?} does not mention {reason:?}",
        lines[0]
    );
}

fn marker_case() -> Case {
    let mut case = Case::new("refusal-test");
    case.sh(r#"echo ran; touch "$WS/ran""#);
    case
}

#[test]
fn empty_argv_is_refused() {
    if !base_features() {
        return;
    }
    let mut case = marker_case();
    case.spec.argv.clear();
    let out = case.run();
    assert_refused(&out, "argv is empty");
    assert!(
        out.stderr
            .contains(r#"cannot enforce profile "refusal-test""#)
    );
    assert!(
        out.stderr
            .trim_end()
            .ends_with("refusing to run unconfined")
    );
}

#[test]
fn cwd_outside_the_roots_is_refused_and_nothing_runs() {
    if !base_features() {
        return;
    }
    let mut case = marker_case();
    case.spec.cwd = case.out.clone();
    let out = case.run();
    assert_refused(&out, "outside every read and write root");
    assert!(!case.ws.join("ran").exists());
    // Twin: the same spec with its cwd inside the workspace runs.
    case.spec.cwd = case.ws.clone();
    case.run().expect_line("ran");
    assert!(case.ws.join("ran").exists());
}

#[test]
fn relative_roots_and_bad_environment_are_refused() {
    if !base_features() {
        return;
    }
    let mut case = marker_case();
    case.spec.filesystem.write.push("relative/dir".into());
    assert_refused(&case.run(), "is not absolute");
    let mut case = marker_case();
    case.spec.env.push(("PATH".into(), "/tmp".into()));
    assert_refused(&case.run(), "listed twice");
    assert!(!case.ws.join("ran").exists());
}

#[test]
fn unreadable_or_invalid_specs_are_refused() {
    let run = |args: &[&str], stdin: &str| {
        let mut child = Command::new(HELPER)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["--spec", "/nonexistent/spec.json"], "");
    assert_eq!(code, Some(125));
    assert!(err.contains("/nonexistent/spec.json"), "{err}");
    let (code, err) = run(&["--spec-fd", "99"], "");
    assert_eq!(code, Some(125));
    assert!(err.contains("descriptor 99 is not open"), "{err}");
    let (code, err) = run(&["--bogus"], "");
    assert_eq!(code, Some(125));
    assert!(err.contains("usage"), "{err}");

    let case = marker_case();
    let mut json: serde_json::Value = serde_json::to_value(&case.spec).unwrap();
    json["surprise"] = serde_json::Value::Bool(true);
    let file = case.out.join("bad.json");
    std::fs::write(&file, json.to_string()).unwrap();
    let (code, err) = run(&["--spec", file.to_str().unwrap()], "");
    assert_eq!(code, Some(125));
    assert!(err.contains("unknown field"), "{err}");
    assert!(!case.ws.join("ran").exists());
}

#[test]
fn unenforceable_protected_paths_are_refused() {
    if !namespace_features() {
        return;
    }
    // A symlink loop inside the workspace cannot be resolved, so it cannot be protected.
    let mut case = marker_case();
    std::os::unix::fs::symlink("loop", case.ws.join("loop")).unwrap();
    case.spec.filesystem.protected = vec![case.ws.join("loop/hooks")];
    assert_refused(&case.run(), "too many levels of symbolic links");
    assert!(!case.ws.join("ran").exists());
    // Protecting the whole root filesystem is not something a bind mount can do safely.
    let mut case = marker_case();
    case.spec.filesystem.write.push("/".into());
    case.spec.filesystem.protected = vec!["/".into()];
    assert_refused(&case.run(), "cannot be protected");
}

#[test]
fn probe_report_is_consistent() {
    let p = probe();
    assert_eq!(p.landlock_tcp, p.landlock_abi >= 4);
    assert_eq!(p.landlock_scopes, p.landlock_abi >= 6);
    assert_eq!(p.landlock_unix_sockets, p.landlock_abi >= 9);
    assert_eq!(p.user_namespaces, p.user_namespaces_error.is_none());
    assert_eq!(p.arch, std::env::consts::ARCH);
    // SAFETY: geteuid only queries.
    assert_eq!(p.euid, unsafe { libc::geteuid() });
    // The kernel's own answer, asked independently.
    // SAFETY: the version query reads no memory.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0_usize,
            1_u32,
        )
    };
    assert_eq!(i64::from(p.landlock_abi), abi.max(0));
}
