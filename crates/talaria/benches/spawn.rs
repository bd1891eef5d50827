//! Start-to-exit latency of `/bin/true` on every backend, through the production binary:
//! plain fork/exec, the sandbox helper (`talaria __sandbox`, and the small `talaria-sandbox`
//! binary the executor prefers when installed) with and without namespaces, and an
//! OCI container from the container helper (`talaria __oci-helper`, spoken to over its JSON-lines
//! protocol) — a fresh container per command, and the session's container reused.
//!
//! Run: `cargo bench -p talaria --bench spawn` (TALARIA_BENCH_RUNS=N, default 300). The OCI rows
//! need `/bin/busybox` (busybox-static) for the container's root filesystem.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use talaria_oci::protocol::{Request, Response, RunRequest};
use talaria_oci::{CommandLimits, ContainerCommand, ContainerPlan};
use talaria_sandbox::spec::{
    FilesystemRules, NamespaceRules, NetworkRules, ResourceLimits, SandboxSpec,
};

const TALARIA: &str = env!("CARGO_BIN_EXE_talaria");

fn sandbox_spec(workspace: &Path, namespaces: NamespaceRules) -> SandboxSpec {
    SandboxSpec {
        profile: "bench".into(),
        argv: vec!["/bin/true".into()],
        cwd: workspace.to_owned(),
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        filesystem: FilesystemRules {
            read: ["/usr", "/bin", "/lib", "/lib64", "/etc"]
                .iter()
                .map(Into::into)
                .collect(),
            write: vec![workspace.to_owned()],
            protected: Vec::new(),
        },
        network: NetworkRules::Off,
        namespaces,
        limits: ResourceLimits {
            open_files: Some(1024),
            file_size_bytes: Some(1 << 30),
            ..ResourceLimits::default()
        },
        builtin: None,
    }
}

fn time_runs(runs: usize, mut once: impl FnMut()) -> Vec<Duration> {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            once();
            started.elapsed()
        })
        .collect();
    times.sort();
    times
}

fn run_command(mut command: Command) {
    let status = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "the benchmarked command failed: {status}");
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// A `talaria __oci-helper` and a busybox root filesystem to run `/bin/true` in.
struct OciHelper {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
    plan: ContainerPlan,
    command: ContainerCommand,
    next_id: u64,
}

impl OciHelper {
    fn start(root: &Path, workspace: &Path) -> Self {
        let rootfs = root.join("rootfs");
        for dir in ["bin", "proc", "dev", "tmp", "etc", "sys"] {
            std::fs::create_dir_all(rootfs.join(dir)).unwrap();
        }
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
        std::os::unix::fs::symlink("busybox", rootfs.join("bin/true")).unwrap();
        let scratch = root.join("scratch");
        std::fs::create_dir_all(&scratch).unwrap();
        let mut child = Command::new(TALARIA)
            .args(["__oci-helper", "--state"])
            .arg(root.join("state"))
            .arg("--images")
            .arg(root.join("images"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let spec = sandbox_spec(workspace, NamespaceRules::default());
        Self {
            plan: ContainerPlan::from_spec(&spec, &rootfs, workspace, &scratch),
            command: ContainerCommand {
                argv: vec!["/bin/true".into()],
                cwd: workspace.to_owned(),
                env: vec![("PATH".into(), "/bin".into())],
                limits: CommandLimits::default(),
                stdin: None,
                timeout: Duration::from_secs(30),
                output_limit: 4096,
            },
            child,
            stdin,
            stdout,
            next_id: 1,
        }
    }

    fn run(&mut self, fresh: bool) {
        let request = Request::Run(Box::new(RunRequest::new(
            self.next_id,
            &self.plan,
            &self.command,
            fresh,
        )));
        self.next_id += 1;
        let mut line = serde_json::to_vec(&request).unwrap();
        line.push(b'\n');
        self.stdin.write_all(&line).unwrap();
        self.stdin.flush().unwrap();
        let mut answer = String::new();
        self.stdout.read_line(&mut answer).unwrap();
        match serde_json::from_str::<Response>(&answer).unwrap() {
            Response::Report(report) => assert!(
                matches!(report.exit, talaria_oci::protocol::Exit::Code(0)),
                "{answer}"
            ),
            Response::Failure(failure) => panic!("the container helper failed: {failure:?}"),
        }
    }

    fn stop(mut self) {
        let _ = writeln!(
            self.stdin,
            "{}",
            serde_json::to_string(&Request::Shutdown).unwrap()
        );
        drop(self.stdin);
        let _ = self.child.wait();
    }
}

fn main() {
    let runs: usize = std::env::var("TALARIA_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let scratch = tempfile::tempdir().unwrap();
    let workspace = scratch.path().join("workspace");
    std::fs::create_dir_all(&workspace).unwrap();
    let write_spec = |name: &str, s: &SandboxSpec| {
        let path = scratch.path().join(name);
        std::fs::write(&path, serde_json::to_vec(s).unwrap()).unwrap();
        path
    };
    let plain_spec = write_spec(
        "plain.json",
        &sandbox_spec(&workspace, NamespaceRules::default()),
    );
    let ns_spec = write_spec(
        "ns.json",
        &sandbox_spec(
            &workspace,
            NamespaceRules {
                user: true,
                mount: true,
                pid: true,
                net: true,
            },
        ),
    );
    let helper = |spec: &Path| {
        let mut command = Command::new(TALARIA);
        command.arg("__sandbox").arg("--spec").arg(spec);
        command
    };
    time_runs(20, || run_command(helper(&ns_spec)));

    let mut rows: Vec<(&str, Vec<Duration>)> = vec![
        (
            "plain fork/exec",
            time_runs(runs, || run_command(Command::new("/bin/true"))),
        ),
        (
            "talaria __sandbox, no namespaces asked",
            time_runs(runs, || run_command(helper(&plain_spec))),
        ),
        (
            "talaria __sandbox, user/mnt/pid/net ns",
            time_runs(runs, || run_command(helper(&ns_spec))),
        ),
    ];
    // The small standalone helper, which the executor prefers when it is installed next to
    // `talaria` (cargo builds it into the same directory).
    let standalone = Path::new(TALARIA).with_file_name("talaria-sandbox");
    if standalone.is_file() {
        let small = |spec: &Path| {
            let mut command = Command::new(&standalone);
            command.arg("--spec").arg(spec);
            command
        };
        rows.push((
            "talaria-sandbox, no namespaces asked",
            time_runs(runs, || run_command(small(&plain_spec))),
        ));
        rows.push((
            "talaria-sandbox, user/mnt/pid/net ns",
            time_runs(runs, || run_command(small(&ns_spec))),
        ));
    }
    if Path::new("/bin/busybox").exists() {
        let mut oci = OciHelper::start(&scratch.path().join("oci"), &workspace);
        oci.run(false);
        rows.push((
            "OCI container, fresh per command",
            time_runs(runs, || oci.run(true)),
        ));
        rows.push((
            "OCI container, reused in a session",
            time_runs(runs, || oci.run(false)),
        ));
        oci.stop();
    } else {
        println!("(OCI rows skipped: /bin/busybox is missing; install busybox-static)");
    }

    let base = pct(&rows[0].1, 0.5).as_secs_f64();
    println!("start-to-exit latency of /bin/true, {runs} runs each");
    println!(
        "{:<38} {:>9} {:>9} {:>12}",
        "", "p50 ms", "p99 ms", "p50 / plain"
    );
    for (name, times) in &rows {
        let p50 = pct(times, 0.5);
        println!(
            "{:<38} {:>9.3} {:>9.3} {:>11.2}x",
            name,
            p50.as_secs_f64() * 1e3,
            pct(times, 0.99).as_secs_f64() * 1e3,
            p50.as_secs_f64() / base
        );
    }
}
