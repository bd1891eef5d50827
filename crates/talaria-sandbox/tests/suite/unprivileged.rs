//! The helper run by an unprivileged user, as a per-user service would: Landlock and seccomp
//! without privileges, `tasks` through `RLIMIT_NPROC`, protected paths through an unprivileged
//! user namespace. As root these tests switch to an otherwise unused uid; run by a normal user
//! the rest of the suite already covers this, so they skip.

use std::os::unix::process::CommandExt;

use super::support::{
    Case, PY_ATTEMPT, base_features, namespace_features, private_root_implied, python,
};

/// A distinct, otherwise unused uid per test: `RLIMIT_NPROC` counts every process of the uid,
/// so tests running in parallel must not share one.
fn test_uid(offset: u32) -> Option<u32> {
    // SAFETY: geteuid only queries.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP: already unprivileged; the rest of the suite runs as this user");
        return None;
    }
    Some(64_000 + offset)
}

fn run_as(case: &Case, uid: u32) -> super::support::Outcome {
    Case::run_command(case.command().uid(uid).gid(uid))
}

#[test]
fn unprivileged_helper_confines_the_command() {
    if !base_features() {
        return;
    }
    let Some(uid) = test_uid(1) else { return };
    let mut case = Case::new("unprivileged");
    case.hand_to(uid).sh(
        r#"id -u; echo x > "$OUT/f" 2>/dev/null || echo outside-denied; echo y > inside && echo inside-ok
        grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status"#,
    );
    let out = run_as(&case, uid);
    out.ok();
    for line in [
        uid.to_string().as_str(),
        "outside-denied",
        "inside-ok",
        "NoNewPrivs:\t1",
        "Seccomp:\t2",
    ] {
        out.expect_line(line);
    }
    assert!(!case.out.join("f").exists());
}

fn nproc_fork_bomb(uid: u32, pid_namespace: bool) {
    let Some(py) = python() else { return };
    let mut case = Case::new("unprivileged-tasks");
    case.hand_to(uid)
        .py(
            &py,
            r#"
import os, time
pids = []
for i in range(40):
    try:
        pid = os.fork()
    except OSError as e:
        break
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    pids.append(pid)
print("forked", len(pids))
for p in pids:
    os.kill(p, 9)
    os.waitpid(p, 0)
"#,
        )
        .namespaces(pid_namespace, pid_namespace, pid_namespace, false);
    case.spec.limits.tasks = Some(6);
    let forked = |out: &super::support::Outcome| -> usize {
        out.ok()
            .lines()
            .find_map(|l| l.strip_prefix("forked "))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let held = forked(&run_as(&case, uid));
    assert!(held < 6, "made {held} processes with tasks = 6");
    case.spec.limits.tasks = None;
    assert_eq!(forked(&run_as(&case, uid)), 40);
}

#[test]
fn unprivileged_tasks_limit_uses_rlimit_nproc() {
    if !base_features() {
        return;
    }
    let Some(uid) = test_uid(2) else { return };
    nproc_fork_bomb(uid, false);
}

#[test]
fn unprivileged_tasks_limit_in_a_pid_namespace() {
    if !namespace_features() {
        return;
    }
    let Some(uid) = test_uid(3) else { return };
    nproc_fork_bomb(uid, true);
}

#[test]
fn unprivileged_protected_paths() {
    if !namespace_features() {
        return;
    }
    let Some(uid) = test_uid(4) else { return };
    let mut case = Case::new("unprivileged-protected");
    case.hand_to(uid);
    case.spec.filesystem.protected = vec![case.ws.join(".git/hooks")];
    case.sh(r#"mkdir -p .git/hooks 2>/dev/null || echo create-denied
        mkdir notes && echo ok > notes/a && echo twin-ok"#);
    let out = run_as(&case, uid);
    out.ok();
    out.expect_line("create-denied");
    out.expect_line("twin-ok");
    assert!(
        !case.ws.join(".git").exists(),
        "the placeholder was left behind"
    );
}

#[test]
fn unprivileged_helper_keeps_host_sockets_out_of_reach() {
    use std::os::unix::fs::PermissionsExt;
    if !base_features() {
        return;
    }
    let Some(uid) = test_uid(5) else { return };
    let Some(py) = python() else { return };
    let mut case = Case::new("unprivileged-sockets");
    case.hand_to(uid);
    // Both sockets are world-writable, so file permissions would let the uid connect to either.
    let listen = |path: std::path::PathBuf| {
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
        listener.set_nonblocking(true).unwrap();
        (listener, path.display().to_string())
    };
    let (host, host_path) = listen(case.out.join("host.sock"));
    let (own, own_path) = listen(case.ws.join("own.sock"));
    case.py(
        &py,
        &format!(
            r#"{PY_ATTEMPT}
def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.settimeout(5); s.connect(path)
attempt("host", lambda: connect({host_path:?}))
attempt("own", lambda: connect({own_path:?}))
"#
        ),
    );
    let out = run_as(&case, uid);
    out.ok();
    let errno = if private_root_implied() {
        "ENOENT"
    } else {
        "EACCES"
    };
    out.expect_line(&format!("host {errno}"));
    out.expect_line("own OK");
    assert!(
        host.accept().is_err(),
        "the sandbox reached the host socket"
    );
    assert!(own.accept().is_ok());
}
