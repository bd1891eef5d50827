//! What a command in the container can and cannot reach: files, network, kernel interfaces,
//! resources. Each escape attempt sits next to a harmless twin that must work.

use std::net::TcpListener;
use std::time::Duration;

use talaria_sandbox::spec::NetworkRules;

use super::support::Fixture;

#[test]
fn workspace_is_writable_at_its_host_path_and_the_rootfs_is_read_only() {
    let Some(fx) = Fixture::new() else { return };
    let mut helper = fx.helper("s");
    let plan = fx.plan();
    std::fs::write(fx.workspace.join("from-host"), "host text\n").unwrap();
    let ws = fx.workspace.display();
    let ran = helper.run(
        &plan,
        &fx.sh(&format!(
            "cat {ws}/from-host && echo container text > {ws}/from-container && echo s > {}/in-scratch",
            fx.scratch.display()
        )),
    );
    assert_eq!(ran.ok(), "host text\n");
    assert_eq!(
        std::fs::read_to_string(fx.workspace.join("from-container")).unwrap(),
        "container text\n"
    );
    assert!(fx.scratch.join("in-scratch").exists());

    let ro = helper.run(&plan, &fx.sh("touch /bin/evil"));
    assert_eq!(ro.code(), Some(1));
    assert!(ro.stderr.contains("Read-only file system"), "{}", ro.stderr);
    assert!(!fx.rootfs.join("bin/evil").exists());
    // The container's own /tmp is writable (a private tmpfs).
    assert_eq!(
        helper
            .run(&plan, &fx.sh("echo t > /tmp/t && cat /tmp/t"))
            .ok(),
        "t\n"
    );
}

#[test]
fn host_files_outside_the_roots_are_invisible() {
    let Some(fx) = Fixture::new() else { return };
    let mut helper = fx.helper("s");
    let secret = fx.base().join("secret.txt");
    std::fs::write(&secret, "do not read").unwrap();
    let ran = helper.run(
        &fx.plan(),
        &fx.sh(&format!(
            "cat {} ; cat /etc/shadow ; ls {} ; ls /",
            secret.display(),
            fx.rootfs.display()
        )),
    );
    assert!(!ran.stdout.contains("do not read"));
    assert!(
        ran.stderr.contains("No such file or directory"),
        "{}",
        ran.stderr
    );
    let root: Vec<&str> = ran.stdout.lines().collect();
    assert_eq!(root, ["bin", "dev", "etc", "proc", "root", "sys", "tmp"]);
}

#[test]
fn protected_paths_stay_read_only() {
    let Some(fx) = Fixture::new() else { return };
    std::fs::create_dir_all(fx.workspace.join(".git/hooks")).unwrap();
    let mut helper = fx.helper("s");
    let ws = fx.workspace.display();
    let ran = helper.run(
        &fx.plan(),
        &fx.sh(&format!("echo evil > {ws}/.git/hooks/pre-commit")),
    );
    assert_ne!(ran.code(), Some(0));
    assert!(
        ran.stderr.contains("Read-only file system"),
        "{}",
        ran.stderr
    );
    assert!(!fx.workspace.join(".git/hooks/pre-commit").exists());
    // The rest of .git stays writable.
    helper
        .run(&fx.plan(), &fx.sh(&format!("echo ok > {ws}/.git/HEAD")))
        .ok();
}

#[test]
fn a_missing_protected_path_gets_a_placeholder_that_is_removed_afterwards() {
    let Some(fx) = Fixture::new() else { return };
    let mut helper = fx.helper("s");
    let ws = fx.workspace.display();
    let ran = helper.run(
        &fx.plan(),
        &fx.sh(&format!(
            "mkdir -p {ws}/.git/hooks && echo evil > {ws}/.git/hooks/pre-commit"
        )),
    );
    assert_ne!(ran.code(), Some(0));
    assert!(
        ran.stderr.contains("Read-only file system"),
        "{}",
        ran.stderr
    );
    // While the session lasts the placeholder is an empty directory on the host.
    assert_eq!(
        std::fs::read_dir(fx.workspace.join(".git"))
            .unwrap()
            .count(),
        0
    );
    assert!(helper.shutdown().success());
    assert!(!fx.workspace.join(".git").exists());
}

#[test]
fn network_off_means_no_interfaces_and_no_connections() {
    let Some(fx) = Fixture::new() else { return };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut helper = fx.helper("s");
    let plan = fx.plan();
    let ran = helper.run(
        &plan,
        &fx.sh("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '"),
    );
    assert_eq!(ran.ok(), "lo\n");
    let connect = helper.run(
        &plan,
        &fx.sh(&format!("echo hi | nc -w 2 127.0.0.1 {port}")),
    );
    assert_ne!(connect.code(), Some(0));
    assert!(
        listener.accept().is_err(),
        "the host listener got a connection"
    );
    // AF_INET sockets are denied outright (the seccomp filter), as on the Landlock backend.
    assert!(
        connect.stderr.contains("Operation not permitted"),
        "{}",
        connect.stderr
    );
}

#[test]
fn loopback_network_reaches_only_the_container_itself() {
    let Some(fx) = Fixture::new() else { return };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let host_port = listener.local_addr().unwrap().port();
    let mut helper = fx.helper("s");
    let mut plan = fx.plan();
    plan.network = NetworkRules::Loopback;
    let ran = helper.run(
        &plan,
        &fx.sh(&format!(
            "nc -l -p 7777 > /tmp/got & \
             for i in $(seq 50); do echo over-loopback | nc -w 2 127.0.0.1 7777 2>/dev/null && break; sleep 0.1; done; \
             for i in $(seq 50); do [ -s /tmp/got ] && break; sleep 0.1; done; cat /tmp/got; \
             echo hi | nc -w 2 127.0.0.1 {host_port} && echo reached-host"
        )),
    );
    assert_eq!(ran.stdout, "over-loopback\n", "stderr: {}", ran.stderr);
    assert!(
        listener.accept().is_err(),
        "the host listener got a connection"
    );
}

#[test]
fn allow_lists_are_refused_not_widened() {
    let Some(fx) = Fixture::new() else { return };
    let mut helper = fx.helper("s");
    let mut plan = fx.plan();
    plan.network = NetworkRules::AllowTcp { ports: vec![443] };
    let error = helper.refused(&plan, &fx.sh("true"));
    assert!(error.contains("cannot enforce a TCP allow-list"), "{error}");
}

#[test]
fn commands_have_seccomp_no_capabilities_and_no_new_privileges_every_time() {
    let Some(fx) = Fixture::new() else { return };
    let mut helper = fx.helper("s");
    let plan = fx.plan();
    let probe = fx.sh(
        "grep -E '^(Seccomp|NoNewPrivs|CapEff|CapPrm|CapBnd):' /proc/self/status | tr -d '\\t'; \
         unshare -U true 2>/dev/null && echo unshare-worked; \
         mount -t tmpfs none /tmp 2>/dev/null && echo mount-worked",
    );
    // The first run creates the container, the second is exec'd into it: both are confined.
    for _ in 0..2 {
        let ran = helper.run(&plan, &probe);
        assert_eq!(
            ran.stdout,
            "CapPrm:0000000000000000\nCapEff:0000000000000000\nCapBnd:0000000000000000\nNoNewPrivs:1\nSeccomp:2\n"
        );
    }
}

#[test]
fn memory_limit_kills_a_hog() {
    let Some(fx) = Fixture::new() else { return };
    let mut helper = fx.helper("s");
    let mut plan = fx.plan();
    plan.memory_bytes = Some(64 << 20);
    // tail -c N keeps N bytes in memory.
    let ran = helper.run(
        &plan,
        &fx.sh("head -c 300000000 /dev/zero | tail -c 200000000 | wc -c; echo status=$?"),
    );
    assert!(
        !ran.stdout.starts_with("200000000"),
        "the hog got its memory: {}",
        ran.stdout
    );
    // The container survives its command's OOM kill.
    assert_eq!(helper.run(&plan, &fx.sh("echo fine")).ok(), "fine\n");
}

#[test]
fn pids_limit_stops_a_fork_bomb() {
    let Some(fx) = Fixture::new() else { return };
    let mut helper = fx.helper("s");
    let mut plan = fx.plan();
    plan.tasks = Some(16);
    // The loop runs in a subshell (a failed fork ends a shell script); the count uses shell
    // builtins only, since at the limit nothing can fork.
    let ran = helper.run(
        &plan,
        &fx.sh("(for i in $(seq 40); do sleep 30 & done); set -- /proc/[0-9]*; echo $#"),
    );
    let processes: u64 = ran.stdout.trim().parse().unwrap();
    // The limit covers the commands' processes plus the container's init.
    assert!(
        processes <= 17,
        "{processes} processes under a limit of 16 (+1 init)"
    );
    assert!(
        processes >= 10,
        "the limit is far lower than asked: {processes}"
    );
    assert!(ran.stderr.contains("can't fork"), "{}", ran.stderr);

    let mut bomb = fx.sh("bomb() { bomb | bomb & }; bomb; sleep 2");
    bomb.timeout = Duration::from_secs(5);
    let ran = helper.run(&plan, &bomb);
    assert!(ran.report.duration_ms < 10_000);
    assert_eq!(
        helper.run(&plan, &fx.sh("echo survived")).ok(),
        "survived\n"
    );
}
