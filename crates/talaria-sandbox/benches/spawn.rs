//! Start-to-exit latency of `/bin/true`: plain fork/exec against the sandbox helper, with and
//! without namespaces. Prints p50/p99 over N runs each and the ratio to plain exec. On kernels
//! below Landlock ABI 9 even "no namespaces asked" runs in implied user and mount namespaces
//! with the private root filesystem (see `src/rootfs.rs`).
//!
//! Run: `cargo bench -p talaria-sandbox --bench spawn` (TALARIA_BENCH_RUNS=N, default 300).
//! The OCI backend is measured by its own crate.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use talaria_sandbox::spec::{
    FilesystemRules, NamespaceRules, NetworkRules, ResourceLimits, SandboxSpec,
};

fn spec(workspace: &Path, namespaces: NamespaceRules) -> SandboxSpec {
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
    }
}

fn time_runs(runs: usize, mut make: impl FnMut() -> Command) -> Vec<Duration> {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let mut command = make();
            command
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let started = Instant::now();
            let status = command.status().unwrap();
            let elapsed = started.elapsed();
            assert!(status.success(), "the benchmarked command failed: {status}");
            elapsed
        })
        .collect();
    times.sort();
    times
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let runs: usize = std::env::var("TALARIA_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let helper = env!("CARGO_BIN_EXE_talaria-sandbox");
    let workspace = tempfile::tempdir().unwrap();
    let specs = tempfile::tempdir().unwrap();
    let write_spec = |name: &str, s: &SandboxSpec| {
        let path = specs.path().join(name);
        std::fs::write(&path, serde_json::to_vec(s).unwrap()).unwrap();
        path
    };
    let plain_spec = write_spec(
        "ll.json",
        &spec(workspace.path(), NamespaceRules::default()),
    );
    let mnt_spec = write_spec(
        "mnt.json",
        &spec(
            workspace.path(),
            NamespaceRules {
                user: true,
                mount: true,
                pid: false,
                net: false,
            },
        ),
    );
    let ns_spec = write_spec(
        "ns.json",
        &spec(
            workspace.path(),
            NamespaceRules {
                user: true,
                mount: true,
                pid: true,
                net: true,
            },
        ),
    );

    let helper_with = |spec: &Path| {
        let mut command = Command::new(helper);
        command.arg("--spec").arg(spec);
        command
    };
    // Warm the page cache and the helper binary.
    time_runs(20, || helper_with(&ns_spec));

    let rows: Vec<(&str, Vec<Duration>)> = vec![
        (
            "plain fork/exec",
            time_runs(runs, || Command::new("/bin/true")),
        ),
        (
            "helper: no namespaces asked",
            time_runs(runs, || helper_with(&plain_spec)),
        ),
        (
            "helper: user/mnt ns (+net: off)",
            time_runs(runs, || helper_with(&mnt_spec)),
        ),
        (
            "helper: user/mnt/pid/net ns",
            time_runs(runs, || helper_with(&ns_spec)),
        ),
    ];
    let base = pct(&rows[0].1, 0.5).as_secs_f64();
    println!("start-to-exit latency of /bin/true, {runs} runs each");
    println!(
        "{:<32} {:>9} {:>9} {:>12}",
        "", "p50 ms", "p99 ms", "p50 / plain"
    );
    for (name, times) in &rows {
        let p50 = pct(times, 0.5);
        println!(
            "{:<32} {:>9.3} {:>9.3} {:>11.2}x",
            name,
            p50.as_secs_f64() * 1e3,
            pct(times, 0.99).as_secs_f64() * 1e3,
            p50.as_secs_f64() / base
        );
    }
    let added = (pct(&rows[1].1, 0.5).as_secs_f64() - base) * 1e3;
    let abi = talaria_sandbox::landlock::kernel_abi();
    let how = if abi >= talaria_sandbox::landlock::UNIX_SOCKET_ABI {
        "Landlock and seccomp alone"
    } else {
        "Landlock, seccomp and the implied private root"
    };
    println!(
        "the helper adds {added:.3} ms at p50 with no namespaces asked (Landlock ABI {abi}: {how})"
    );
}
