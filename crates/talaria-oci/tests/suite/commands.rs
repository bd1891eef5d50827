//! Running commands: output, exit status, stdin, environment, timeout, output cap, leftovers.

use std::time::{Duration, Instant};

use talaria_oci::protocol::Exit;

use super::support::Fixture;

#[test]
fn echo_exit_codes_and_signals() {
    let Some(fx) = Fixture::new() else { return };
    let mut helper = fx.helper("s");
    let plan = fx.plan();
    let ran = helper.run(&plan, &fx.sh("echo hello; echo oops >&2"));
    assert_eq!((ran.ok(), ran.stderr.as_str()), ("hello\n", "oops\n"));
    assert_eq!(helper.run(&plan, &fx.sh("exit 7")).code(), Some(7));
    assert_eq!(
        helper.run(&plan, &fx.sh("kill -9 $$")).exit,
        Exit::Signal(9)
    );
    let missing = helper.run(
        &plan,
        &talaria_oci::ContainerCommand {
            argv: vec!["no-such-program".into()],
            ..fx.sh("")
        },
    );
    assert_eq!(missing.code(), Some(127));
    assert!(
        missing.stderr.contains("cannot run no-such-program"),
        "{}",
        missing.stderr
    );
    // PATH lookup uses the command's own PATH.
    let looked_up = helper.run(
        &plan,
        &talaria_oci::ContainerCommand {
            argv: vec!["echo".into(), "found".into()],
            ..fx.sh("")
        },
    );
    assert_eq!(looked_up.ok(), "found\n");
}

#[test]
fn stdin_is_delivered_and_large_input_streams() {
    let Some(fx) = Fixture::new() else { return };
    let mut helper = fx.helper("s");
    let plan = fx.plan();
    let mut cat = fx.sh("cat");
    cat.stdin = Some(b"fed through stdin".to_vec());
    assert_eq!(helper.run(&plan, &cat).ok(), "fed through stdin");
    let mut count = fx.sh("wc -c");
    count.stdin = Some(vec![b'x'; 3 << 20]);
    assert_eq!(helper.run(&plan, &count).ok().trim(), (3 << 20).to_string());
    // A command that ignores its input does not hang the run.
    let mut ignore = fx.sh("echo ignored");
    ignore.stdin = Some(vec![b'y'; 1 << 20]);
    assert_eq!(helper.run(&plan, &ignore).ok(), "ignored\n");
    // Without stdin, it is /dev/null.
    assert_eq!(helper.run(&plan, &fx.sh("cat; echo end")).ok(), "end\n");
}

#[test]
fn environment_and_working_directory_are_exactly_the_requested_ones() {
    let Some(fx) = Fixture::new() else { return };
    let mut helper = fx.helper("s");
    let mut command = fx.sh("tr '\\0' '\\n' < /proc/$$/environ | sort; pwd");
    command
        .env
        .push(("HOME".into(), fx.scratch.display().to_string()));
    command.env.push(("ODD".into(), "a=b c".into()));
    let ran = helper.run(&fx.plan(), &command);
    assert_eq!(
        ran.ok(),
        format!(
            "HOME={}\nODD=a=b c\nPATH=/bin\n{}\n",
            fx.scratch.display(),
            fx.workspace.display()
        )
    );
}

#[test]
fn timeout_kills_the_command_and_its_children() {
    let Some(fx) = Fixture::new() else { return };
    let mut helper = fx.helper("s");
    let plan = fx.plan();
    let marker = fx.workspace.join("leaked");
    let mut command = fx.sh(&format!(
        "(sleep 2; echo leaked > {}) & exec sleep 60",
        marker.display()
    ));
    command.timeout = Duration::from_millis(500);
    let started = Instant::now();
    let ran = helper.run(&plan, &command);
    assert!(ran.report.timed_out);
    assert_eq!(ran.exit, Exit::Signal(9));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        !marker.exists(),
        "a child of the timed-out command survived"
    );
    // The container is still usable afterwards.
    assert_eq!(helper.run(&plan, &fx.sh("echo alive")).ok(), "alive\n");
}

#[test]
fn background_processes_do_not_outlive_their_command() {
    let Some(fx) = Fixture::new() else { return };
    let mut helper = fx.helper("s");
    let plan = fx.plan();
    let marker = fx.workspace.join("late");
    // setsid: leaving the process group and session does not help either.
    let ran = helper.run(
        &plan,
        &fx.sh(&format!(
            "(sleep 3; echo late > {m}) & setsid sh -c 'sleep 3; echo late >> {m}' & echo started",
            m = marker.display()
        )),
    );
    assert_eq!(ran.ok(), "started\n");
    assert!(
        ran.report.duration_ms < 2500,
        "the run waited for its children"
    );
    std::thread::sleep(Duration::from_millis(3500));
    assert!(!marker.exists());
    let ps = helper.run(&plan, &fx.sh("ps -o comm"));
    let others: Vec<&str> = ps
        .ok()
        .lines()
        .skip(1)
        .filter(|c| *c != "sh" && *c != "ps")
        .collect();
    assert_eq!(others, ["talaria-init"]);
}

#[test]
fn output_is_capped_head_and_tail() {
    let Some(fx) = Fixture::new() else { return };
    let mut helper = fx.helper("s");
    let mut command =
        fx.sh("head -c 50000 /dev/zero | tr '\\0' A; head -c 50000 /dev/zero | tr '\\0' Z");
    command.output_limit = 1000;
    let ran = helper.run(&fx.plan(), &command);
    let out = ran.ok();
    assert!(out.starts_with(&"A".repeat(500)), "{out}");
    assert!(out.ends_with(&"Z".repeat(500)), "{out}");
    assert!(
        out.contains("[... 99000 bytes of output omitted ...]"),
        "{out}"
    );
    assert_eq!(ran.report.dropped, 99_000);
}
