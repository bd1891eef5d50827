//! Building specs, running the real helper, and skipping on kernels that lack a feature.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use talaria_sandbox::probe::ProbeReport;
use talaria_sandbox::spec::{
    FilesystemRules, NamespaceRules, NetworkRules, ResourceLimits, SandboxSpec,
};

pub const HELPER: &str = env!("CARGO_BIN_EXE_talaria-sandbox");

/// Longest any single sandboxed command in these tests may run.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// The helper's own `--probe` report (what the kernel can enforce), computed once per process.
pub fn probe() -> &'static ProbeReport {
    static REPORT: OnceLock<ProbeReport> = OnceLock::new();
    REPORT.get_or_init(|| {
        let out = Command::new(HELPER).arg("--probe").output().unwrap();
        assert!(
            out.status.success(),
            "--probe failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    })
}

/// Returns false (and says why) when the kernel cannot run any sandbox at all; every test that
/// runs a command calls this first. On a kernel with the features it returns true, so the test
/// runs for real.
#[must_use]
pub fn base_features() -> bool {
    let p = probe();
    if p.landlock_abi < 3 || !p.seccomp_filter {
        eprintln!(
            "SKIP: kernel lacks Landlock ABI 3 (has {}) or seccomp filters ({}); the helper refuses every spec here",
            p.landlock_abi, p.seccomp_filter
        );
        return false;
    }
    if !p.landlock_unix_sockets && !p.user_namespaces {
        eprintln!(
            "SKIP: Landlock ABI {} cannot hide the host's unix sockets and user namespaces are not usable ({:?}); the helper refuses every spec here",
            p.landlock_abi, p.user_namespaces_error
        );
        return false;
    }
    true
}

/// Whether a spec without namespaces of its own still runs in the private root filesystem
/// (Landlock below ABI 9 cannot keep the host's unix sockets out of reach).
#[must_use]
pub fn private_root_implied() -> bool {
    !probe().landlock_unix_sockets
}

/// Like [`base_features`] plus usable user namespaces.
#[must_use]
pub fn namespace_features() -> bool {
    if !base_features() {
        return false;
    }
    let p = probe();
    if !p.user_namespaces {
        eprintln!(
            "SKIP: user namespaces are not usable here: {:?}",
            p.user_namespaces_error
        );
        return false;
    }
    true
}

/// A real Python 3 and the tree it needs readable, or `None` (with a message) if there is none.
pub fn python() -> Option<(PathBuf, PathBuf)> {
    let found = ["/usr/bin/python3", "/usr/local/bin/python3"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .and_then(|p| p.canonicalize().ok());
    let Some(exe) = found else {
        eprintln!("SKIP: python3 is not installed; this probe needs it");
        return None;
    };
    // /usr/bin/python3.11 -> /usr
    let prefix = exe
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/usr"));
    Some((exe, prefix))
}

/// The result of one helper run.
#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    fn from_output(out: &Output) -> Self {
        use std::os::unix::process::ExitStatusExt;
        let code = out
            .status
            .code()
            .unwrap_or_else(|| 128 + out.status.signal().unwrap_or(0));
        Self {
            code,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Asserts exit 0 and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(
            self.code, 0,
            "expected success; stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        &self.stdout
    }

    /// Whether stdout has a line exactly equal to `line`.
    pub fn has_line(&self, line: &str) -> bool {
        self.stdout.lines().any(|l| l.trim_end() == line)
    }

    #[track_caller]
    pub fn expect_line(&self, line: &str) {
        assert!(
            self.has_line(line),
            "expected line {line:?}; code {}; stdout:\n{}\nstderr:\n{}",
            self.code,
            self.stdout,
            self.stderr
        );
    }
}

/// One sandbox run: a scratch directory holding the workspace (the write root), a directory
/// outside every root, and the spec file (also outside every root).
#[derive(Debug)]
pub struct Case {
    _base: tempfile::TempDir,
    pub ws: PathBuf,
    pub out: PathBuf,
    pub spec: SandboxSpec,
    spec_file: PathBuf,
}

impl Case {
    pub fn new(profile: &str) -> Self {
        let base = tempfile::Builder::new()
            .prefix("talaria-sandbox-test")
            .tempdir()
            .unwrap();
        let root = base.path().canonicalize().unwrap();
        let ws = root.join("ws");
        let out = root.join("outside");
        std::fs::create_dir(&ws).unwrap();
        std::fs::create_dir(&out).unwrap();
        let read = ["/usr", "/bin", "/lib", "/lib64", "/etc", "/proc"]
            .iter()
            .map(PathBuf::from)
            .filter(|p| p.exists())
            .collect();
        let spec = SandboxSpec {
            profile: profile.to_owned(),
            argv: vec!["true".into()],
            cwd: ws.clone(),
            env: vec![
                ("PATH".into(), "/usr/bin:/bin".into()),
                ("WS".into(), ws.display().to_string()),
                ("OUT".into(), out.display().to_string()),
            ],
            filesystem: FilesystemRules {
                read,
                write: vec![ws.clone(), "/dev/null".into()],
                protected: vec![],
            },
            network: NetworkRules::Off,
            namespaces: NamespaceRules::default(),
            limits: ResourceLimits::default(),
            builtin: None,
        };
        Self {
            spec_file: root.join("spec.json"),
            _base: base,
            ws,
            out,
            spec,
        }
    }

    /// Runs `script` with `/bin/sh -c`.
    pub fn sh(&mut self, script: &str) -> &mut Self {
        self.spec.argv = vec!["sh".into(), "-c".into(), script.into()];
        self
    }

    /// Runs `code` with Python (the caller got `python` from [`python`]).
    pub fn py(&mut self, python: &(PathBuf, PathBuf), code: &str) -> &mut Self {
        let (exe, prefix) = python;
        if !self
            .spec
            .filesystem
            .read
            .iter()
            .any(|r| prefix.starts_with(r))
        {
            self.spec.filesystem.read.push(prefix.clone());
        }
        self.spec.argv = vec![exe.display().to_string(), "-c".into(), code.into()];
        self
    }

    pub fn namespaces(&mut self, user: bool, mount: bool, pid: bool, net: bool) -> &mut Self {
        self.spec.namespaces = NamespaceRules {
            user,
            mount,
            pid,
            net,
        };
        self
    }

    /// Makes the scratch directory usable by `uid` (for runs as an unprivileged user): the base
    /// becomes traversable, the workspace and the outside directory owned by `uid`.
    pub fn hand_to(&mut self, uid: u32) -> &mut Self {
        use std::os::unix::fs::PermissionsExt;
        let base = self.ws.parent().unwrap();
        std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o755)).unwrap();
        for dir in [&self.ws, &self.out] {
            std::os::unix::fs::chown(dir, Some(uid), Some(uid)).unwrap();
        }
        self
    }

    fn write_spec(&self) {
        std::fs::write(&self.spec_file, serde_json::to_vec(&self.spec).unwrap()).unwrap();
    }

    /// A `Command` for the helper with this spec, environment cleared but for `extra_env`.
    pub fn command(&self) -> Command {
        self.write_spec();
        let mut cmd = Command::new(HELPER);
        cmd.arg("--spec").arg(&self.spec_file).stdin(Stdio::null());
        cmd
    }

    pub fn run(&self) -> Outcome {
        Self::run_command(&mut self.command())
    }

    /// Runs to completion, killing the helper's whole process group (it starts a session) if
    /// it outlives [`RUN_TIMEOUT`]: a layer that fails open must fail the test, not hang it.
    pub fn run_command(cmd: &mut Command) -> Outcome {
        use std::io::Read;
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let out_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            stdout
                .read_to_end(&mut buf)
                .map(|_| buf)
                .unwrap_or_default()
        });
        let err_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            stderr
                .read_to_end(&mut buf)
                .map(|_| buf)
                .unwrap_or_default()
        });
        let deadline = Instant::now() + RUN_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let pid = i32::try_from(child.id()).unwrap();
                // SAFETY: kill on the process group our own child leads.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
                let _ = child.kill();
                let _ = child.wait();
                panic!("the helper ran longer than {RUN_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let output = Output {
            status,
            stdout: out_reader.join().unwrap(),
            stderr: err_reader.join().unwrap(),
        };
        Outcome::from_output(&output)
    }
}

/// Python prelude: `attempt(name, f)` prints `name OK` or `name ERRNO`.
pub const PY_ATTEMPT: &str = r#"
import errno, os, socket, ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
def attempt(name, f):
    try:
        f()
        print(name, "OK")
    except OSError as e:
        print(name, errno.errorcode.get(e.errno, e.errno))
    sys.stdout.flush()
def check(ret):
    if ret == -1:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return ret
"#;
