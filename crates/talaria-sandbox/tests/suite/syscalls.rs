//! seccomp, `no_new_privs`, capabilities and Landlock scoping, probed from Python with raw
//! system calls; each denied call next to an allowed relative.

use super::support::{Case, PY_ATTEMPT, base_features, python};

// Syscall numbers shared by x86_64 and aarch64 (allocated after the tables were unified).
const NR_IO_URING_SETUP: u32 = 425;
const NR_CLONE3: u32 = 435;

fn run_py(code: &str) -> Option<super::support::Outcome> {
    let py = python()?;
    let mut case = Case::new("syscalls");
    case.py(&py, &format!("{PY_ATTEMPT}{code}"));
    Some(case.run())
}

#[test]
fn io_uring_is_denied() {
    if !base_features() {
        return;
    }
    let Some(out) = run_py(&format!(
        r#"
params = ctypes.create_string_buffer(120)
attempt("io_uring_setup", lambda: check(libc.syscall({NR_IO_URING_SETUP}, 4, params)))
attempt("getpid", lambda: check(libc.getpid()))
"#
    )) else {
        return;
    };
    out.ok();
    out.expect_line("io_uring_setup EPERM");
    out.expect_line("getpid OK");
}

#[test]
fn ptrace_and_signals_cannot_reach_the_parent() {
    if !base_features() {
        return;
    }
    let Some(out) = run_py(
        r#"
PTRACE_ATTACH = 16
parent = os.getppid()
attempt("ptrace-attach", lambda: check(libc.ptrace(PTRACE_ATTACH, parent, None, None)))
attempt("process_vm_readv", lambda: check(libc.process_vm_readv(parent, None, 0, None, 0, 0)))
attempt("signal-parent", lambda: os.kill(parent, 0))
attempt("signal-self", lambda: os.kill(os.getpid(), 0))
def child():
    pid = os.fork()
    if pid == 0:
        import time; time.sleep(30); os._exit(0)
    os.kill(pid, 9); os.waitpid(pid, 0)
attempt("signal-child", child)
"#,
    ) else {
        return;
    };
    out.ok();
    out.expect_line("ptrace-attach EPERM");
    out.expect_line("process_vm_readv EPERM");
    out.expect_line("signal-self OK");
    out.expect_line("signal-child OK");
    // Landlock scoping (ABI 6+); on older kernels the helper refuses without a pid namespace.
    out.expect_line("signal-parent EPERM");
}

#[test]
fn no_new_privs_and_no_capabilities() {
    if !base_features() {
        return;
    }
    let mut case = Case::new("syscalls");
    case.sh("grep -E '^(NoNewPrivs|Seccomp|CapEff|CapPrm|CapBnd|CapAmb):' /proc/self/status");
    let out = case.run();
    out.ok();
    for line in [
        "NoNewPrivs:\t1",
        "Seccomp:\t2",
        "CapEff:\t0000000000000000",
        "CapPrm:\t0000000000000000",
        "CapBnd:\t0000000000000000",
        "CapAmb:\t0000000000000000",
    ] {
        out.expect_line(line);
    }
}

#[test]
fn namespace_creation_is_denied_but_plain_fork_works() {
    if !base_features() {
        return;
    }
    let Some(out) = run_py(&format!(
        r#"
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
CLONE_FILES = 0x400
attempt("unshare-user", lambda: check(libc.unshare(CLONE_NEWUSER)))
attempt("unshare-net", lambda: check(libc.unshare(CLONE_NEWNET)))
attempt("unshare-files", lambda: check(libc.unshare(CLONE_FILES)))
attempt("clone3", lambda: check(libc.syscall({NR_CLONE3}, None, 0)))
attempt("setns", lambda: check(libc.setns(0, 0)))
def fork():
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 7
attempt("fork", fork)
"#
    )) else {
        return;
    };
    out.ok();
    out.expect_line("unshare-user EPERM");
    out.expect_line("unshare-net EPERM");
    out.expect_line("unshare-files OK");
    out.expect_line("clone3 ENOSYS");
    out.expect_line("setns EPERM");
    out.expect_line("fork OK");
}

#[test]
fn personality_terminal_injection_and_mounts_are_denied() {
    if !base_features() {
        return;
    }
    let Some(out) = run_py(
        r#"
import fcntl, termios
ADDR_NO_RANDOMIZE = 0x0040000
attempt("personality-norandom", lambda: check(libc.personality(ADDR_NO_RANDOMIZE)))
attempt("personality-query", lambda: check(libc.personality(0xffffffff)))
attempt("personality-linux", lambda: check(libc.personality(0)))
attempt("tiocsti", lambda: fcntl.ioctl(0, termios.TIOCSTI, b"x"))
attempt("tcgets", lambda: fcntl.ioctl(0, termios.TCGETS, bytes(64)))
attempt("mount", lambda: check(libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)))
attempt("bpf", lambda: check(libc.syscall(321 if os.uname().machine == "x86_64" else 280, 0, None, 0)))
attempt("keyctl", lambda: check(libc.syscall(250 if os.uname().machine == "x86_64" else 219, 0, 0, 0, 0, 0)))
"#,
    ) else {
        return;
    };
    out.ok();
    out.expect_line("personality-norandom EPERM");
    out.expect_line("personality-query OK");
    out.expect_line("personality-linux OK");
    // stdin is /dev/null: without the filter TIOCSTI would fail with ENOTTY, like TCGETS.
    out.expect_line("tiocsti EPERM");
    out.expect_line("tcgets ENOTTY");
    out.expect_line("mount EPERM");
    out.expect_line("bpf EPERM");
    out.expect_line("keyctl EPERM");
}
