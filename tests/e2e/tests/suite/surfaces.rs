//! The surface travels from the person to the executor and can only narrow. Through the real
//! units — gateway, agent, executor on a private bus, a fake model — with a profile that lets
//! the owner write one directory outside the workspace: the owner's own turn writes there; a
//! gateway key holder's identical command is refused by the sandbox; and a hand-made
//! `Executor1` call that names no surface (or one this version does not know) is treated as the
//! narrowest, never as the owner.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use talaria_bus::{AgentProxy, ExecutorProxy, names};
use talaria_testkit::{FakeModelServer, Reply};
use zbus::OwnedVariant;

use super::fixture::{
    Bus, Daemon, ExecutorPolicy, KEY, agentd, answer, bin, completion, free_port, http,
    last_tool_result, options, run_turn, s, scratch, terminal, wait_for_name,
};

const TURN: Duration = Duration::from_secs(90);

/// A profile that may also write `outside`, and the terminal mapped to it.
fn wide_policy(home: &Path, outside: &Path) {
    let policies = home.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(
        policies.join("wide.toml"),
        format!(
            "inherits = \"workspace-write\"\n\
             description = \"workspace-write plus one directory outside the workspace\"\n\
             [filesystem]\n\
             write = [\"${{workspace}}\", \"${{tmp}}\", \"/dev/null\", \"{}\"]\n",
            outside.display()
        ),
    )
    .unwrap();
    std::fs::write(
        policies.join("tools.toml"),
        "[tools]\nterminal = \"wide\"\n",
    )
    .unwrap();
}

fn gateway(port: u16, bus: &Bus, state: &Path) -> Child {
    Command::new(bin("talaria-gatewayd"))
        .args([
            "--bus",
            &bus.address,
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("--state-dir")
        .arg(state)
        .env("TALARIA_GATEWAY_KEY", KEY)
        .env("TALARIA_LOG", "info")
        .stdin(Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_holder_runs_narrowed_and_a_missing_surface_is_the_narrowest() {
    let dir = scratch();
    let bus = Bus::start(dir.path(), ExecutorPolicy::AgentOnly);
    let model = FakeModelServer::start().await;
    let home = dir.path().join("home");
    let workspace = dir.path().join("workspace");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::create_dir_all(&workspace).unwrap();
    wide_policy(&home, &outside);
    let home_arg = home.to_str().unwrap();
    let _executord = Daemon::spawn("talaria-executord", &["--home", home_arg], &bus);
    let _agentd = agentd(&bus, &home, &workspace, &model.base_url(), &[]);
    let client = bus.connect().await;
    wait_for_name(&client, names::EXECUTOR, true, TURN).await;
    wait_for_name(&client, names::AGENT, true, TURN).await;

    // The owner (a caller that says so) writes outside the workspace, as the profile allows.
    let owner_file = outside.join("owner.txt");
    model.push(terminal(&format!("echo owner > {}", owner_file.display())));
    model.push(Reply::text("written"));
    let agent = AgentProxy::new(&client).await.unwrap();
    let owner = options(&[
        ("create", OwnedVariant::from(true)),
        ("surface", s("owner")),
        ("request_id", s("owner-turn")),
    ]);
    let events = run_turn(&agent, "owner-session", "write it", &owner, TURN)
        .await
        .unwrap();
    assert_eq!(answer(&events), "written");
    assert_eq!(
        std::fs::read_to_string(&owner_file).unwrap(),
        "owner\n",
        "the owner's write outside the workspace was refused: {}",
        last_tool_result(&model)
    );

    // A gateway key holder asks for the same: the agent runs it narrowed, and the sandbox
    // refuses the write (the directory stays readable, not writable).
    let port = free_port();
    let mut gatewayd = gateway(port, &bus, &dir.path().join("gateway"));
    let key_file = outside.join("key.txt");
    model.push(terminal(&format!(
        "echo key > {} ; cat {}",
        key_file.display(),
        owner_file.display()
    )));
    model.push(Reply::text("tried"));
    let (status, _, body) = http(port, "POST", "/v1/chat/completions", &completion("write")).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        !key_file.exists(),
        "a key holder wrote outside the workspace"
    );
    let result = last_tool_result(&model);
    assert!(
        result.contains("Read-only file system") || result.contains("Permission denied"),
        "the write failed for another reason: {result}"
    );
    assert!(result.contains("owner"), "reading stays allowed: {result}");
    let _ = gatewayd.kill();
    let _ = gatewayd.wait();

    // A hand-made Executor1 call: with surface=owner the write goes through; without a
    // surface, or with one this version does not know, it is narrowed like a webhook.
    let executor = ExecutorProxy::new(&client).await.unwrap();
    let stdin = talaria_bus::fd::memory_file("stdin", b"").unwrap();
    for (surface, file, allowed) in [
        (Some("owner"), "direct-owner", true),
        (None, "direct-none", false),
        (Some("root"), "direct-unknown", false),
        (Some("webhook"), "direct-webhook", false),
    ] {
        let target = outside.join(file);
        let mut pairs = vec![
            ("tool", s("terminal")),
            ("session", s("direct")),
            ("workspace", s(workspace.to_str().unwrap())),
            (
                "argv",
                OwnedVariant::try_from(zbus::Variant::from(vec![
                    "/bin/sh".to_owned(),
                    "-c".to_owned(),
                    format!("echo x > {}", target.display()),
                ]))
                .unwrap(),
            ),
        ];
        if let Some(surface) = surface {
            pairs.push(("surface", s(surface)));
        }
        let outcome = executor
            .run(&options(&pairs), (&stdin).into())
            .await
            .unwrap();
        assert_eq!(
            target.exists(),
            allowed,
            "surface {surface:?}: exit {}",
            outcome.exit_code
        );
        assert_eq!(outcome.exit_code == 0, allowed, "surface {surface:?}");
    }
}
