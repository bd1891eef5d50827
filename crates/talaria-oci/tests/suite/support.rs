//! A busybox root filesystem, a workspace layout, and a blocking client for the helper.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use talaria_oci::protocol::{ContainerUse, Exit, Request, Response, RunReport, RunRequest};
use talaria_oci::{CommandLimits, ContainerCommand, ContainerPlan};
use talaria_sandbox::spec::{FilesystemRules, NetworkRules};

pub const HELPER: &str = env!("CARGO_BIN_EXE_talaria-oci-helper");
const BUSYBOX: &str = "/bin/busybox";

/// Whether `path` is a statically linked ELF executable (no `PT_INTERP` program header).
fn is_static_elf(path: &Path) -> bool {
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap()) as usize;
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    (0..phnum).all(|i| {
        let at = phoff + i * phentsize;
        at + 4 <= bytes.len() && u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) != 3
    })
}

/// Copy the static busybox into `root/bin` with a symlink per applet, plus the directories a
/// root filesystem needs. `None` (with a message) when busybox-static is not installed.
pub fn build_busybox_rootfs(root: &Path) -> Option<()> {
    if !Path::new(BUSYBOX).exists() {
        eprintln!(
            "SKIP: {BUSYBOX} is missing; install busybox-static (scripts/prereqs.sh does) to run the container tests"
        );
        return None;
    }
    assert!(
        is_static_elf(Path::new(BUSYBOX)),
        "{BUSYBOX} is dynamically linked and cannot run in a bare root filesystem; install busybox-static"
    );
    for dir in ["bin", "proc", "dev", "sys", "tmp", "etc", "root"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::copy(BUSYBOX, root.join("bin/busybox")).unwrap();
    let list = Command::new(BUSYBOX).arg("--list").output().unwrap();
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    Some(())
}

/// A temporary machine: a busybox root filesystem, a workspace, a scratch directory and a
/// state root for helpers.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub rootfs: PathBuf,
    pub workspace: PathBuf,
    pub scratch: PathBuf,
    pub state_root: PathBuf,
}

impl Fixture {
    /// `None` (test skipped, with a message) when busybox-static is missing.
    pub fn new() -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        let rootfs = base.join("rootfs");
        build_busybox_rootfs(&rootfs)?;
        let workspace = base.join("workspace");
        let scratch = base.join("scratch");
        let state_root = base.join("state");
        for d in [&workspace, &scratch, &state_root] {
            std::fs::create_dir_all(d).unwrap();
        }
        Some(Self {
            dir,
            rootfs,
            workspace,
            scratch,
            state_root,
        })
    }

    pub fn base(&self) -> PathBuf {
        self.dir.path().canonicalize().unwrap()
    }

    /// workspace-write in a container: write the workspace and scratch, `.git/hooks` protected,
    /// no network, 256 MiB, 64 tasks.
    pub fn plan(&self) -> ContainerPlan {
        ContainerPlan {
            profile: "oci-test".into(),
            rootfs: self.rootfs.clone(),
            workspace: self.workspace.clone(),
            scratch: self.scratch.clone(),
            filesystem: FilesystemRules {
                read: vec![],
                write: vec![self.workspace.clone(), self.scratch.clone()],
                protected: vec![self.workspace.join(".git/hooks")],
            },
            network: NetworkRules::Off,
            memory_bytes: Some(256 << 20),
            tasks: Some(64),
        }
    }

    /// `sh -c SCRIPT` in the workspace.
    pub fn sh(&self, script: &str) -> ContainerCommand {
        ContainerCommand {
            argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
            cwd: self.workspace.clone(),
            env: vec![("PATH".into(), "/bin".into())],
            limits: CommandLimits {
                cpu_seconds: Some(60),
                file_size_bytes: Some(64 << 20),
                open_files: Some(256),
            },
            stdin: None,
            timeout: Duration::from_secs(20),
            output_limit: 64 * 1024,
        }
    }

    pub fn state_dir(&self, session: &str) -> PathBuf {
        self.state_root.join(session)
    }

    pub fn images(&self) -> PathBuf {
        self.state_root.join(".images")
    }

    /// Start a helper for `session`.
    pub fn helper(&self, session: &str) -> Helper {
        Helper::spawn(&self.state_dir(session), &self.images())
    }
}

/// A running helper and a blocking line client.
pub struct Helper {
    pub child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    next_id: u64,
    pub state: PathBuf,
}

/// A run's report, decoded.
#[derive(Debug)]
pub struct Ran {
    pub exit: Exit,
    pub stdout: String,
    pub stderr: String,
    pub report: RunReport,
}

impl Ran {
    pub fn code(&self) -> Option<i32> {
        match self.exit {
            Exit::Code(c) => Some(c),
            Exit::Signal(_) => None,
        }
    }

    pub fn container(&self) -> ContainerUse {
        self.report.container
    }

    /// Assert exit 0 and return stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(self.exit, Exit::Code(0), "stderr: {}", self.stderr);
        &self.stdout
    }
}

impl Helper {
    pub fn spawn(state: &Path, images: &Path) -> Self {
        let mut child = Command::new(HELPER)
            .arg("--state")
            .arg(state)
            .arg("--images")
            .arg(images)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Self {
            child,
            stdin,
            stdout,
            next_id: 1,
            state: state.to_owned(),
        }
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap()
    }

    pub fn send(&mut self, request: &Request) {
        let stdin = self.stdin.as_mut().unwrap();
        let mut line = serde_json::to_vec(request).unwrap();
        line.push(b'\n');
        stdin.write_all(&line).unwrap();
        stdin.flush().unwrap();
    }

    pub fn receive(&mut self) -> Response {
        let mut line = String::new();
        let n = self.stdout.read_line(&mut line).unwrap();
        assert!(n > 0, "the helper closed its stdout");
        serde_json::from_str(&line).unwrap()
    }

    pub fn request(
        &mut self,
        plan: &ContainerPlan,
        command: &ContainerCommand,
        fresh: bool,
    ) -> Response {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&Request::Run(Box::new(RunRequest::new(
            id, plan, command, fresh,
        ))));
        self.receive()
    }

    /// Run and expect a report (not an error).
    #[track_caller]
    pub fn run(&mut self, plan: &ContainerPlan, command: &ContainerCommand) -> Ran {
        Self::decode(self.request(plan, command, false))
    }

    #[track_caller]
    pub fn run_fresh(&mut self, plan: &ContainerPlan, command: &ContainerCommand) -> Ran {
        Self::decode(self.request(plan, command, true))
    }

    #[track_caller]
    fn decode(response: Response) -> Ran {
        match response {
            Response::Report(report) => Ran {
                exit: report.exit,
                stdout: String::from_utf8_lossy(&report.stdout().unwrap()).into_owned(),
                stderr: String::from_utf8_lossy(&report.stderr().unwrap()).into_owned(),
                report,
            },
            Response::Failure(f) => panic!("the helper refused: {}", f.error),
        }
    }

    /// Expect an error response; return its message.
    #[track_caller]
    pub fn refused(&mut self, plan: &ContainerPlan, command: &ContainerCommand) -> String {
        match self.request(plan, command, false) {
            Response::Failure(f) => f.error,
            Response::Report(r) => panic!("expected a refusal, got {r:?}"),
        }
    }

    /// Send `shutdown` and wait for the helper to exit.
    pub fn shutdown(mut self) -> std::process::ExitStatus {
        self.send(&Request::Shutdown);
        self.stdin = None;
        self.child.wait().unwrap()
    }

    /// Close stdin (as a dying executor would) and wait.
    pub fn close(mut self) -> std::process::ExitStatus {
        self.stdin = None;
        self.child.wait().unwrap()
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        self.stdin = None;
        let _ = self.child.wait();
    }
}

/// The container ids under a helper's state directory.
pub fn container_ids(state: &Path) -> Vec<String> {
    std::fs::read_dir(state.join("containers"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The pids cgroup directory of a container, on cgroup v1 or v2.
pub fn cgroup_dir(id: &str) -> PathBuf {
    for base in ["/sys/fs/cgroup/pids", "/sys/fs/cgroup"] {
        let candidate = Path::new(base).join("talaria-oci").join(id);
        if Path::new(base).join("talaria-oci").exists() {
            return candidate;
        }
    }
    Path::new("/sys/fs/cgroup/talaria-oci").join(id)
}

/// Whether a process exists (and is not a zombie).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rfind(')')
            .and_then(|e| stat[e + 1..].split_whitespace().next())
            .is_some_and(|s| s != "Z" && s != "X")
    })
}

/// Wait up to `limit` for `cond`.
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}
