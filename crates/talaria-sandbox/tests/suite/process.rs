//! Process hygiene: descriptors, environment, session, exit status, PID namespace, signals.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::support::{Case, base_features, namespace_features, probe, python};

const LEAK_FD: i32 = 57;

/// Opens `path` on descriptor [`LEAK_FD`] *without* close-on-exec, as a careless caller would.
fn leak_fd(path: &std::path::Path) -> OwnedFd {
    let file = std::fs::File::open(path).unwrap();
    // SAFETY: dup2 onto a fixed number this test owns; the new descriptor has no CLOEXEC flag.
    let fd = unsafe { libc::dup2(file.as_raw_fd(), LEAK_FD) };
    assert_eq!(fd, LEAK_FD);
    // SAFETY: dup2 just created it; this OwnedFd is its only owner.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

#[test]
fn inherited_descriptors_are_closed() {
    if !base_features() {
        return;
    }
    let Some(py) = python() else { return };
    let mut case = Case::new("fds");
    std::fs::write(case.out.join("secret"), "LEAKED-SECRET").unwrap();
    let _leak = leak_fd(&case.out.join("secret"));
    let code = format!(
        r#"
import os
try:
    print(os.read({LEAK_FD}, 100).decode())
except OSError as e:
    print("closed", e.errno)
print("stdout-ok")
"#
    );
    // Control: without the helper the descriptor does leak, so this test can fail.
    let control = Command::new(&py.0).args(["-c", &code]).output().unwrap();
    assert!(String::from_utf8_lossy(&control.stdout).contains("LEAKED-SECRET"));

    case.py(&py, &code);
    let out = case.run();
    out.ok();
    assert!(!out.stdout.contains("LEAKED-SECRET"), "{}", out.stdout);
    out.expect_line(&format!("closed {}", libc::EBADF));
    out.expect_line("stdout-ok");
}

#[test]
fn spec_descriptor_is_read_and_closed() {
    if !base_features() {
        return;
    }
    let mut case = Case::new("spec-fd");
    case.spec.argv = vec!["ls".into(), "/proc/self/fd".into()];
    let json = serde_json::to_vec(&case.spec).unwrap();
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: pipe2 just created both; each OwnedFd is the only owner.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    std::fs::File::from(write).write_all(&json).unwrap();
    const SPEC_FD: i32 = 63;
    // SAFETY: dup2 onto a number this test owns; the copy (without CLOEXEC) reaches the helper.
    assert_eq!(unsafe { libc::dup2(read.as_raw_fd(), SPEC_FD) }, SPEC_FD);
    // SAFETY: dup2 just created it.
    let _spec_fd = unsafe { OwnedFd::from_raw_fd(SPEC_FD) };
    drop(read);
    let out = Case::run_command(
        Command::new(super::support::HELPER)
            .args(["--spec-fd", "63"])
            .stdin(Stdio::null()),
    );
    let listed: Vec<&str> = out.ok().lines().collect();
    assert!(listed.contains(&"0") && listed.contains(&"2"), "{listed:?}");
    assert!(
        !listed.contains(&"63"),
        "the spec descriptor leaked: {listed:?}"
    );
}

#[test]
fn environment_is_exactly_the_specs() {
    if !base_features() {
        return;
    }
    let mut case = Case::new("env");
    case.spec
        .env
        .push(("GREETING".into(), "hello world".into()));
    case.spec.argv = vec!["env".into()];
    let out = Case::run_command(
        case.command()
            .env("TALARIA_TEST_SECRET", "sk-do-not-leak")
            .env("LD_PRELOAD", "/nonexistent/preload.so")
            .env("HOME", "/root"),
    );
    let mut got: Vec<&str> = out.ok().lines().collect();
    let mut want: Vec<String> = case
        .spec
        .env
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want);
    assert!(!out.stdout.contains("sk-do-not-leak"));
    assert!(!out.stdout.contains("LD_PRELOAD"));
}

#[test]
fn command_runs_in_a_new_session() {
    if !base_features() {
        return;
    }
    let mut case = Case::new("session");
    // Field 6 of /proc/self/stat is the session id.
    case.sh("cut -d' ' -f6 /proc/self/stat");
    let out = case.run();
    let sid: i32 = out.ok().trim().parse().unwrap();
    // SAFETY: getsid(0) only queries.
    let ours = unsafe { libc::getsid(0) };
    assert_ne!(sid, ours);
}

#[test]
fn exit_status_passes_through() {
    if !base_features() {
        return;
    }
    let mut case = Case::new("status");
    assert_eq!(case.sh("exit 42").run().code, 42);
    assert_eq!(case.sh("exit 0").run().code, 0);
    // Death by signal: the direct exec reports the signal itself (128 + 9 for our waiter).
    assert_eq!(case.sh("kill -9 $$").run().code, 137);
}

#[test]
fn exit_status_passes_through_the_pid_namespace() {
    if !namespace_features() {
        return;
    }
    let mut case = Case::new("status");
    case.namespaces(true, true, true, false);
    assert_eq!(case.sh("exit 42").run().code, 42);
    assert_eq!(case.sh("kill -9 $$").run().code, 137);
}

#[test]
fn not_found_and_not_executable() {
    if !base_features() {
        return;
    }
    let mut case = Case::new("exec");
    case.spec.argv = vec!["no-such-command-xyz".into()];
    let out = case.run();
    assert_eq!(out.code, 127);
    assert_eq!(
        out.stderr.trim(),
        "talaria-sandbox: command not found: no-such-command-xyz"
    );

    std::fs::write(case.ws.join("script"), "#!/bin/sh\necho ran\n").unwrap();
    case.spec.argv = vec!["./script".into()];
    let out = case.run();
    assert_eq!(out.code, 126);
    assert!(out.stderr.contains("EACCES"), "{}", out.stderr);

    // Executable but outside every root. With Landlock ABI 9 the file is visible and Landlock
    // denies executing it; below that the private root filesystem does not contain it at all.
    let outside_true = case.out.join("true");
    std::fs::copy("/bin/true", &outside_true).unwrap();
    case.spec.argv = vec![outside_true.display().to_string()];
    let out = case.run();
    let (code, errno) = if probe().landlock_abi >= 9 {
        (126, "EACCES")
    } else {
        (127, "ENOENT")
    };
    assert_eq!(out.code, code, "{}", out.stderr);
    assert!(out.stderr.contains(errno), "{}", out.stderr);

    // Twin: a bare name found in the spec's PATH runs.
    case.spec.argv = vec!["true".into()];
    assert_eq!(case.run().code, 0);
}

#[test]
fn pid_namespace_shows_only_the_sandbox() {
    if !namespace_features() {
        return;
    }
    let mut case = Case::new("pid");
    let script =
        r#"echo "me=$$"; n=0; for p in /proc/[0-9]*; do n=$((n+1)); done; echo "procs=$n""#;
    case.sh(script).namespaces(true, true, true, false);
    let out = case.run();
    out.ok();
    out.expect_line("me=2");
    let procs: usize = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("procs="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(procs <= 4, "saw {procs} processes");
    // Twin: without the namespace the host's processes are visible.
    case.namespaces(false, false, false, false);
    let out = case.run();
    let procs: usize = out
        .ok()
        .lines()
        .find_map(|l| l.strip_prefix("procs="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        procs > 4,
        "saw only {procs} processes without a pid namespace"
    );
}

fn marker_processes(marker: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .filter(|cmdline| String::from_utf8_lossy(cmdline).contains(marker))
        .count()
}

#[test]
fn sigterm_is_forwarded_and_sigkill_takes_the_sandbox_down() {
    if !namespace_features() {
        return;
    }
    let mut case = Case::new("signals");
    let marker = format!("{}.{}", 300, std::process::id());
    case.spec.argv = vec!["sleep".into(), marker.clone()];
    case.namespaces(true, true, true, false);

    let mut child = case.command().spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while marker_processes(&marker) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(marker_processes(&marker), 1);
    // SAFETY: kill on our own child's pid.
    unsafe { libc::kill(i32::try_from(child.id()).unwrap(), libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + libc::SIGTERM));
    assert_eq!(marker_processes(&marker), 0);

    let mut child = case.command().spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while marker_processes(&marker) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(marker_processes(&marker), 1);
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while marker_processes(&marker) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        marker_processes(&marker),
        0,
        "the sandbox outlived a SIGKILL of the helper"
    );
}
