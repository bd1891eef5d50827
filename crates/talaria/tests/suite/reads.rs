//! The read tools through the real binary: `talaria chat -q` whose model asks for files the
//! profile does not list, special files and a FIFO, then a workspace file. Each refusal comes
//! back to the model naming the path and the rule, the turn ends with the answer, and the
//! harmless read works.

use std::time::{Duration, Instant};

use serde_json::json;
use talaria_testkit::Reply;

use super::harness::{Env, tool_messages};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_tools_answer_what_the_sandbox_allows_and_refuse_the_rest_by_name() {
    let env = Env::new().await;
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().canonicalize().unwrap().join("secret.txt");
    std::fs::write(&secret, "top-secret-content\n").unwrap();
    let work = env.work_path();
    std::fs::write(work.join("notes.txt"), "workspace notes\n").unwrap();
    let fifo = work.join("pipe");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let calls = [
        ("read_file", json!({"path": secret})),
        ("read_file", json!({"path": "/dev/zero"})),
        ("read_file", json!({"path": "pipe"})),
        (
            "search_files",
            json!({"pattern": "x", "path": "/proc/self"}),
        ),
        (
            "search_files",
            json!({"pattern": "top-secret", "path": outside.path()}),
        ),
        ("read_file", json!({"path": "notes.txt"})),
    ];
    for (tool, args) in &calls {
        env.server.push(Reply::tool_call(*tool, args.to_string()));
    }
    env.server.push(Reply::text("read what I could"));
    let started = Instant::now();
    let out = env.run(&["chat", "-q", "read some files"]).await.success();
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(out.stdout(), "read what I could\n");

    let requests = env.server.chat_requests();
    let results: Vec<String> = tool_messages(&requests.last().unwrap().body)
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(results.len(), calls.len(), "{results:#?}");
    let expected = [
        format!("`{}` is outside profile read-only", secret.display()),
        "`/dev/zero` is under /dev, which read tools never open or walk".to_owned(),
        "is a FIFO, not a regular file".to_owned(),
        "`/proc/self` is under /proc".to_owned(),
        "is outside profile read-only".to_owned(),
        "     1|workspace notes".to_owned(),
    ];
    for (result, want) in results.iter().zip(&expected) {
        assert!(
            result.contains(want.as_str()),
            "wanted {want:?} in {result:?}"
        );
        assert!(!result.contains("top-secret-content"), "{result}");
    }
}
