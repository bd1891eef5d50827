//! Resource limits: tasks (pids cgroup as root, `RLIMIT_NPROC` otherwise), address space, file
//! size, CPU time, open files, core dumps.

use super::support::{Case, base_features, namespace_features, probe, python};

const FORK_BOMB: &str = r#"
import os, time
pids = []
for i in range(60):
    try:
        pid = os.fork()
    except OSError as e:
        break
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    pids.append(pid)
print("forked", len(pids))
for p in pids:
    os.kill(p, 9)
    os.waitpid(p, 0)
"#;

fn forked(out: &super::support::Outcome) -> usize {
    out.ok()
        .lines()
        .find_map(|l| l.strip_prefix("forked "))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn fork_bomb(pid_namespace: bool) {
    if !probe().tasks_enforceable {
        eprintln!(
            "SKIP: running as root without a usable pids cgroup; the helper refuses `tasks` here"
        );
        return;
    }
    let Some(py) = python() else { return };
    let mut case = Case::new("tasks");
    case.py(&py, FORK_BOMB)
        .namespaces(pid_namespace, pid_namespace, pid_namespace, false);
    case.spec.limits.tasks = Some(8);
    let mut child = case
        .command()
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let helper_pid = child.id();
    let mut stdout = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    assert!(child.wait().unwrap().success(), "{stdout}");
    let count: usize = stdout
        .lines()
        .find_map(|l| l.strip_prefix("forked "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        count < 8,
        "the fork bomb made {count} processes with tasks = 8"
    );
    if let Some(hierarchy) = &probe().pids_cgroup
        && probe().euid == 0
    {
        let dir = hierarchy
            .parent
            .join(format!("talaria-sandbox-{helper_pid}"));
        assert!(!dir.exists(), "{} was left behind", dir.display());
    }
    // Twin: without the limit all 60 forks succeed.
    case.spec.limits.tasks = None;
    assert_eq!(forked(&case.run()), 60);
}

#[test]
fn fork_bomb_is_held_by_tasks() {
    if !base_features() {
        return;
    }
    fork_bomb(false);
}

#[test]
fn fork_bomb_is_held_by_tasks_in_a_pid_namespace() {
    if !namespace_features() {
        return;
    }
    fork_bomb(true);
}

#[test]
fn memory_hog_is_refused() {
    if !base_features() {
        return;
    }
    let Some(py) = python() else { return };
    let mut case = Case::new("memory");
    case.spec.limits.memory_bytes = Some(256 << 20);
    let hog = r#"
try:
    b = bytearray(1 << 30)
    print("allocated")
except MemoryError:
    print("refused")
small = bytearray(16 << 20)
print("small-ok")
"#;
    case.py(&py, hog);
    let out = case.run();
    out.ok();
    out.expect_line("refused");
    out.expect_line("small-ok");
    // Twin: without the limit the same allocation succeeds, so the limit is what refused it.
    case.spec.limits.memory_bytes = None;
    let out = case.run();
    out.expect_line("allocated");
}

#[test]
fn file_size_limit_stops_big_writes() {
    if !base_features() {
        return;
    }
    let mut case = Case::new("fsize");
    case.spec.limits.file_size_bytes = Some(1024);
    case.spec.filesystem.read.push("/dev/zero".into());
    case.sh(
        "head -c 512 /dev/zero > small && echo small-ok; head -c 4096 /dev/zero > big; echo rc=$?",
    );
    let out = case.run();
    out.expect_line("small-ok");
    // SIGXFSZ kills head (128 + 25), or EFBIG makes it fail (1).
    assert!(
        out.has_line("rc=153") || out.has_line("rc=1"),
        "{}",
        out.stdout
    );
    assert_eq!(std::fs::metadata(case.ws.join("big")).unwrap().len(), 1024);
    assert_eq!(std::fs::metadata(case.ws.join("small")).unwrap().len(), 512);
}

#[test]
fn cpu_limit_kills_a_busy_loop() {
    if !base_features() {
        return;
    }
    let mut case = Case::new("cpu");
    case.spec.limits.cpu_seconds = Some(1);
    case.sh("while :; do :; done");
    let started = std::time::Instant::now();
    let out = case.run();
    // SIGKILL at the hard limit (soft = hard), or SIGXCPU.
    assert!(out.code == 137 || out.code == 152, "code {}", out.code);
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}

#[test]
fn open_files_and_core_limits() {
    if !base_features() {
        return;
    }
    let Some(py) = python() else { return };
    let mut case = Case::new("nofile");
    case.spec.limits.open_files = Some(16);
    case.py(
        &py,
        r#"
import os, errno
fds = []
try:
    for i in range(32):
        fds.append(os.open("/dev/null", os.O_RDONLY))
    print("opened", len(fds))
except OSError as e:
    print("stopped", errno.errorcode[e.errno])
for fd in fds:
    os.close(fd)
for line in open("/proc/self/limits"):
    if line.startswith(("Max open files", "Max core file size")):
        print(" ".join(line.split()))
"#,
    );
    let out = case.run();
    out.ok();
    out.expect_line("stopped EMFILE");
    out.expect_line("Max open files 16 16 files");
    out.expect_line("Max core file size 0 0 bytes");
}
