//! Text from the model reaches the terminal escaped: an OSC 52 clipboard write, a line
//! overwrite that makes `sudo id` read `ls -la`, a bidi override, a C1 control — in answers,
//! streamed text, tool progress lines, the approval question and errors — while ordinary text,
//! Unicode and emoji print unchanged. The interactive chat runs on a real pseudo-terminal, so
//! the assertions are about the bytes a terminal would interpret.

use std::ffi::CStr;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

use talaria_testkit::{FakeToolCall, Reply};
use tokio::io::AsyncWriteExt;

use super::harness::{Env, tool_messages};

/// Sets the clipboard to "pwned" in terminals that honour OSC 52.
const OSC52: &str = "\u{1b}]52;c;cHduZWQ=\u{7}";
/// Return to column 0, erase the line, go up one: what follows replaces the line above.
const OVERWRITE: &str = "\r\u{1b}[2K\u{1b}[1A";
/// The approval-spoofing command: runs `sudo id`, reads `ls -la` on a raw terminal.
const SPOOFED: &str = "sudo id\r\u{1b}[2K\u{1b}[1Als -la";
/// Right-to-left override: `invoice\u{202e}fdp.exe` displays as `invoiceexe.pdf`.
const BIDI: &str = "invoice\u{202e}fdp.exe";
/// CSI as a single C1 character: clears the screen on terminals that take 8-bit controls.
const C1_CLEAR: &str = "\u{9b}2J";
/// Ordinary text that must arrive byte for byte.
const ORDINARY: &str = "Résumé: naïve café — 日本語, עברית 👩‍💻👍🏽 ✓\n\tindented";

/// The attacks in one answer, each after a label.
fn hostile_answer() -> String {
    format!("clip {OSC52} over{OVERWRITE}ls -la bidi {BIDI} c1 {C1_CLEAR}\n{ORDINARY}")
}

/// `hostile_answer` as it must be shown.
fn shown_answer() -> String {
    format!(
        "clip \\u{{1b}}]52;c;cHduZWQ=\\u{{7}} over\\r\\u{{1b}}[2K\\u{{1b}}[1Als -la bidi \
         invoice\\u{{202e}}fdp.exe c1 \\u{{9b}}2J\n{ORDINARY}"
    )
}

/// Nothing a terminal would act on: no ESC, BEL, CR or C1 control, no bidi override.
fn assert_inert(what: &str, text: &str) {
    let bad: Vec<char> = text
        .chars()
        .filter(|c| {
            matches!(c, '\u{0}'..='\u{8}' | '\u{b}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .collect();
    assert!(bad.is_empty(), "{what} carries raw {bad:?}:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_shot_answer_and_its_progress_reach_a_pipe_escaped() {
    let env = Env::new().await;
    // A harmless command whose argument carries the overwrite: the progress line shows it.
    env.server.push(Reply::tool_call(
        "terminal",
        serde_json::json!({"command": format!("true {OVERWRITE}{OSC52}")}).to_string(),
    ));
    env.server.push(Reply::text(hostile_answer()));
    let out = env.run(&["-v", "chat", "-q", "show me"]).await.success();
    // Piped, not a terminal: escaped all the same (a pipe usually ends at one).
    assert_eq!(out.stdout(), format!("{}\n", shown_answer()));
    let progress = out
        .stderr()
        .lines()
        .find(|l| l.contains("terminal:"))
        .unwrap_or_else(|| panic!("no progress line:\n{}", out.stderr()))
        .to_owned();
    assert!(
        progress.contains("terminal: true \\r\\u{1b}[2K\\u{1b}[1A\\u{1b}]52;c;cHduZWQ=\\u{7}"),
        "{progress}"
    );
    assert_inert("stderr", &out.stderr());
    // Replaying the stored session shows the same escapes; export keeps the exact text.
    let id = env.latest_session().await;
    let shown = env.run(&["sessions", "show", &id]).await.success().stdout();
    assert!(shown.contains(&shown_answer()), "{shown}");
    assert_inert("sessions show", &shown);
    let exported = env
        .run(&["sessions", "export", &id])
        .await
        .success()
        .stdout();
    assert!(exported.contains("\\u001b]52;c;cHduZWQ="), "{exported}");

    // The harmless twin: nothing to escape, printed exactly.
    env.server.push(Reply::text(ORDINARY));
    let plain = env.run(&["chat", "-q", "say hi"]).await.success();
    assert_eq!(plain.stdout(), format!("{ORDINARY}\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_providers_error_text_is_escaped() {
    let env = Env::new().await;
    env.server.push(Reply::Status {
        code: 400,
        body: serde_json::json!({"error": {"message": format!("bad request{OVERWRITE}all good {OSC52}")}})
            .to_string(),
        retry_after: None,
    });
    let out = env.run(&["chat", "-q", "hello"]).await;
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr()
            .contains("bad request\\r\\u{1b}[2K\\u{1b}[1Aall good \\u{1b}]52;c;cHduZWQ=\\u{7}"),
        "{}",
        out.stderr()
    );
    assert_inert("stderr", &out.stderr());
}

/// A pseudo-terminal pair: the child writes to the slave, the test reads what a terminal
/// emulator would receive from the master.
struct Pty {
    master: OwnedFd,
    slave: OwnedFd,
}

impl Pty {
    fn open() -> Self {
        // SAFETY: posix_openpt takes flags only; its result is checked before use.
        let master = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
        assert!(
            master >= 0,
            "posix_openpt: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: `master` is a new descriptor nothing else owns.
        let master = unsafe { OwnedFd::from_raw_fd(master) };
        // SAFETY: grantpt and unlockpt only act on the valid master descriptor.
        unsafe {
            assert_eq!(libc::grantpt(master.as_raw_fd()), 0, "grantpt");
            assert_eq!(libc::unlockpt(master.as_raw_fd()), 0, "unlockpt");
        }
        let mut name = [0 as libc::c_char; 128];
        // SAFETY: the buffer is valid for writes of its full length.
        let rc = unsafe { libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()) };
        assert_eq!(rc, 0, "ptsname_r");
        // SAFETY: ptsname_r succeeded, so the buffer holds a NUL-terminated path.
        let path = unsafe { CStr::from_ptr(name.as_ptr()) }
            .to_str()
            .unwrap()
            .to_owned();
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
            .open(&path)
            .unwrap();
        Self {
            master,
            slave: slave.into(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_on_a_terminal_escapes_the_model_and_quotes_the_command_to_approve() {
    let env = Env::new().await;
    env.server.push(Reply::ToolCalls {
        text: format!("checking {OSC52}"),
        calls: vec![FakeToolCall::new(
            "terminal",
            serde_json::json!({"command": SPOOFED}).to_string(),
        )],
    });
    env.server.push(Reply::text(hostile_answer()));

    let pty = Pty::open();
    let mut command = env.command(&["chat"]);
    command
        .stdin(std::process::Stdio::piped())
        .stdout(pty.slave.try_clone().unwrap())
        .stderr(pty.slave.try_clone().unwrap());
    let mut child = command.spawn().unwrap();
    // Only the child may hold the slave now, so the master reads EOF (EIO) once it exits.
    drop(command);
    drop(pty.slave);
    let mut master = std::fs::File::from(pty.master);
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match master.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        seen
    });
    let mut stdin = child.stdin.take().unwrap();
    // Ask, refuse the approval, leave.
    stdin.write_all(b"go\nn\n/quit\n").await.unwrap();
    drop(stdin);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the chat ends")
        .unwrap();
    assert!(status.success(), "{status:?}");
    let seen = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::task::spawn_blocking(move || reader.join().unwrap()),
    )
    .await
    .expect("the terminal closes when the chat exits")
    .unwrap();
    // The terminal turns each newline into CR LF (ONLCR); any other CR came from elsewhere.
    let screen = String::from_utf8(seen).unwrap().replace("\r\n", "\n");
    assert_inert("the terminal", &screen);

    assert!(
        screen.contains("checking \\u{1b}]52;c;cHduZWQ=\\u{7}"),
        "streamed text: {screen}"
    );
    assert!(
        screen.contains(
            "⚠ \"sudo id\\r\\u{1b}[2K\\u{1b}[1Als -la\" needs your approval: runs a command as another user. Run it? [y/N]"
        ),
        "the question quotes the command: {screen}"
    );
    assert!(
        screen.contains("✗ terminal: sudo id\\r\\u{1b}[2K\\u{1b}[1Als -la  ("),
        "progress line: {screen}"
    );
    assert!(screen.contains(&shown_answer()), "answer: {screen}");

    // Refused, so nothing ran.
    let requests = env.server.chat_requests();
    let result = tool_messages(&requests[1].body)[0]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(result.contains("needs the user's approval"), "{result}");
}
