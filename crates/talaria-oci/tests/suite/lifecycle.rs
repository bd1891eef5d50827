//! The session container's life: reuse, replacement, and cleanup however the helper ends.

use std::path::Path;
use std::time::Duration;

use talaria_oci::protocol::ContainerUse;

use super::support::{Fixture, Helper, alive, cgroup_dir, container_ids, eventually};

/// The container's id and its init's host pid.
fn container_of(state: &Path) -> (String, i32) {
    let ids = container_ids(state);
    assert_eq!(ids.len(), 1, "{ids:?}");
    let id = ids[0].clone();
    let procs = std::fs::read_to_string(cgroup_dir(&id).join("cgroup.procs")).unwrap();
    let init = procs.lines().next().unwrap().parse().unwrap();
    (id, init)
}

#[track_caller]
fn assert_gone(state: &Path, id: &str, init: i32) {
    assert!(
        eventually(Duration::from_secs(5), || !alive(init)),
        "the container's init is still running"
    );
    assert!(!cgroup_dir(id).exists(), "the container's cgroup is left");
    assert!(!state.exists(), "the state directory is left");
}

#[test]
fn one_container_serves_a_session_and_only_that_session() {
    let Some(fx) = Fixture::new() else { return };
    let plan = fx.plan();
    let mut first = fx.helper("one");
    let ran = first.run(&plan, &fx.sh("echo kept > /tmp/mark; cat /proc/1/comm"));
    assert_eq!(
        (ran.ok(), ran.container()),
        ("talaria-init\n", ContainerUse::Created)
    );
    let again = first.run(&plan, &fx.sh("cat /tmp/mark"));
    assert_eq!(
        (again.ok(), again.container()),
        ("kept\n", ContainerUse::Reused)
    );

    let mut second = fx.helper("two");
    let other = second.run(&plan, &fx.sh("cat /tmp/mark"));
    assert_eq!(other.container(), ContainerUse::Created);
    assert_ne!(
        other.code(),
        Some(0),
        "another session saw this session's /tmp"
    );
}

#[test]
fn a_different_plan_replaces_the_container() {
    let Some(fx) = Fixture::new() else { return };
    let mut helper = fx.helper("s");
    let plan = fx.plan();
    helper.run(&plan, &fx.sh("echo x > /tmp/mark")).ok();
    let (old_id, old_init) = container_of(&helper.state);
    let mut narrower = plan.clone();
    narrower.tasks = Some(32);
    let ran = helper.run(&narrower, &fx.sh("cat /tmp/mark"));
    assert_eq!(ran.container(), ContainerUse::Created);
    assert_ne!(ran.code(), Some(0));
    assert!(eventually(Duration::from_secs(5), || !alive(old_init)));
    assert!(!cgroup_dir(&old_id).exists());
    assert_eq!(container_ids(&helper.state).len(), 1);
}

#[test]
fn shutdown_deletes_the_container_and_the_state() {
    let Some(fx) = Fixture::new() else { return };
    let mut helper = fx.helper("s");
    helper.run(&fx.plan(), &fx.sh("true")).ok();
    let state = helper.state.clone();
    let (id, init) = container_of(&state);
    assert!(alive(init));
    assert!(helper.shutdown().success());
    assert_gone(&state, &id, init);
}

#[test]
fn end_of_input_cleans_up_like_shutdown() {
    let Some(fx) = Fixture::new() else { return };
    let mut helper = fx.helper("s");
    helper.run(&fx.plan(), &fx.sh("true")).ok();
    let state = helper.state.clone();
    let (id, init) = container_of(&state);
    assert!(helper.close().success());
    assert_gone(&state, &id, init);
}

#[test]
fn sigterm_in_the_middle_of_a_command_kills_it_and_cleans_up() {
    let Some(fx) = Fixture::new() else { return };
    let mut helper = fx.helper("s");
    let plan = fx.plan();
    helper.run(&plan, &fx.sh("true")).ok();
    let state = helper.state.clone();
    let (id, init) = container_of(&state);
    let marker = fx.workspace.join("finished");
    helper.send(&talaria_oci::protocol::Request::Run(Box::new(
        talaria_oci::protocol::RunRequest::new(
            99,
            &plan,
            &fx.sh(&format!("sleep 3; touch {}", marker.display())),
            false,
        ),
    )));
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(helper.pid(), libc::SIGTERM) };
    let response = helper.receive();
    assert!(
        matches!(&response, talaria_oci::protocol::Response::Failure(f) if f.id == Some(99)),
        "{response:?}"
    );
    assert!(helper.child.wait().unwrap().success());
    assert_gone(&state, &id, init);
    std::thread::sleep(Duration::from_secs(3));
    assert!(!marker.exists(), "the command outlived the helper");
}

#[test]
fn after_sigkill_the_container_dies_and_the_next_helper_removes_the_leftovers() {
    let Some(fx) = Fixture::new() else { return };
    let mut helper = fx.helper("crashed");
    helper.run(&fx.plan(), &fx.sh("true")).ok();
    let state = helper.state.clone();
    let (id, init) = container_of(&state);
    helper.child.kill().unwrap();
    helper.child.wait().unwrap();
    // The container's init dies with its helper (PR_SET_PDEATHSIG) ...
    assert!(eventually(Duration::from_secs(5), || !alive(init)));
    // ... but its state and cgroup stay until a helper on the same state root starts.
    assert!(state.join("containers").join(&id).exists());
    assert!(cgroup_dir(&id).exists());
    drop(helper);

    let mut next = fx.helper("another-session");
    next.run(&fx.plan(), &fx.sh("true")).ok();
    assert_gone(&state, &id, init);
}

#[test]
fn a_restarted_helper_cleans_its_own_state_directory() {
    let Some(fx) = Fixture::new() else { return };
    let mut helper = fx.helper("s");
    helper.run(&fx.plan(), &fx.sh("true")).ok();
    let (id, _) = container_of(&helper.state);
    helper.child.kill().unwrap();
    helper.child.wait().unwrap();
    drop(helper);
    let mut again = fx.helper("s");
    assert_eq!(
        again.run(&fx.plan(), &fx.sh("true")).container(),
        ContainerUse::Created
    );
    assert!(!cgroup_dir(&id).exists());
    assert!(!container_ids(&again.state).contains(&id));
}

#[test]
fn a_second_helper_cannot_take_a_live_helpers_state() {
    let Some(fx) = Fixture::new() else { return };
    let mut helper = fx.helper("s");
    helper.run(&fx.plan(), &fx.sh("true")).ok();
    let mut intruder = Helper::spawn(&fx.state_dir("s"), &fx.images());
    let status = intruder.child.wait().unwrap();
    assert_eq!(status.code(), Some(125));
    // The first helper's container is untouched.
    assert_eq!(
        helper.run(&fx.plan(), &fx.sh("echo still")).container(),
        ContainerUse::Reused
    );
}

#[test]
fn a_fresh_container_per_command_works_and_leaves_nothing() {
    let Some(fx) = Fixture::new() else { return };
    let mut helper = fx.helper("s");
    let plan = fx.plan();
    // `; true` keeps the shell from exec'ing cat in its place.
    let ran = helper.run_fresh(&plan, &fx.sh("echo fresh; cat /proc/1/comm; true"));
    assert_eq!(ran.container(), ContainerUse::Fresh);
    assert_eq!(ran.ok(), "fresh\nsh\n");
    assert!(container_ids(&helper.state).is_empty());
    // A fresh run does not disturb the session container.
    helper.run(&plan, &fx.sh("echo s > /tmp/s")).ok();
    helper.run_fresh(&plan, &fx.sh("true")).ok();
    assert_eq!(helper.run(&plan, &fx.sh("cat /tmp/s")).ok(), "s\n");
}

#[test]
fn setup_failures_are_reported_not_run_elsewhere() {
    let Some(fx) = Fixture::new() else { return };
    let mut helper = fx.helper("s");
    let mut plan = fx.plan();
    plan.rootfs = fx.base().join("no-such-rootfs");
    let error = helper.refused(&plan, &fx.sh("true"));
    assert!(error.contains("does not exist"), "{error}");
    let mut bad_cwd = fx.sh("true");
    bad_cwd.cwd = "/nonexistent".into();
    let error = helper.refused(&fx.plan(), &bad_cwd);
    assert!(!error.is_empty());
    // The helper carries on.
    helper.run(&fx.plan(), &fx.sh("true")).ok();
}
