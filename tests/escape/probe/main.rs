//! `escape-probe CASE [ARGS…]`: attempt exactly one thing with raw system calls and print a
//! one-line JSON verdict (see `report.rs`), then exit 0. The test decides whether the verdict is
//! the right one; the probe only reports what the kernel said.
//!
//! The probe is the attacker's program in the escape suite: it runs inside the sandbox of
//! either backend, as the command of a tool call. It must never harm the host when a sandbox
//! fails open: every attempt is chosen so that success is observable but harmless (a file in a
//! test directory, a connection to a test listener, `kill(pid, 0)`, a one-byte write to an
//! unmapped address of the parent that can only fail with `EFAULT`).
//!
//! It uses std alone, so build.rs can link it statically for a container root that holds only
//! busybox. Unknown cases and bad arguments exit 2 with a message on stderr.

mod fs;
mod net;
mod privilege;
mod report;
mod resources;
mod sys;

use report::Report;

/// A probe: its name, its arguments for `--help`, and the attempt.
type Probe = (
    &'static str,
    &'static str,
    fn(&Args) -> Result<Report, String>,
);

const PROBES: &[Probe] = &[
    // Files.
    ("create", "PATH", fs::create),
    ("overwrite", "PATH", fs::overwrite),
    ("truncate", "PATH", fs::truncate),
    ("read", "PATH", fs::read),
    ("mkdir", "PATH", fs::mkdir),
    ("mkdir-p", "PATH", fs::mkdir_p),
    ("unlink", "PATH", fs::unlink),
    ("link", "EXISTING NEW", fs::link),
    ("rename", "FROM TO", fs::rename),
    ("exchange", "A B", fs::exchange),
    ("chmod", "PATH OCTAL", fs::chmod),
    ("chmod-every-way", "PATH OCTAL", fs::chmod_every_way),
    ("create-with-mode", "DIR OCTAL", fs::create_with_mode),
    ("write-files", "PATH=TEXT…", fs::write_files),
    ("symlink-write", "TARGET LINK", fs::symlink_write),
    (
        "replace-with-symlink",
        "PATH TARGET",
        fs::replace_with_symlink,
    ),
    ("proc-pid-write", "ABSOLUTE-PATH", fs::proc_pid_write),
    ("swap-race", "TARGET ITERATIONS", fs::swap_race),
    ("write-loop", "DIR ITERATIONS", fs::write_loop),
    ("mount-tmpfs", "PATH", fs::mount_tmpfs),
    ("umount", "PATH", fs::umount),
    ("chroot-breakout", "ABSOLUTE-PATH", fs::chroot_breakout),
    ("mknod-block", "PATH", fs::mknod_block),
    ("open-by-handle", "", fs::open_by_handle),
    ("open-write", "PATH", fs::open_write),
    ("proc-exe-write", "", fs::proc_exe_write),
    // Network.
    ("tcp-connect", "ADDRESS:PORT", net::tcp_connect),
    ("tcp-listen", "ADDRESS:PORT", net::tcp_listen),
    ("udp-send", "ADDRESS:PORT", net::udp_send),
    ("dns-query", "ADDRESS", net::dns_query),
    (
        "socket",
        "inet-raw|packet|vsock|netlink-route|unix",
        net::socket,
    ),
    ("vsock-connect", "PORT", net::vsock_connect),
    ("io-uring", "", net::io_uring),
    ("unix-connect", "PATH", net::unix_connect),
    ("unix-connect-abstract", "NAME", net::unix_connect_abstract),
    ("unix-own", "PATH", net::unix_own),
    ("unix-own-abstract", "NAME", net::unix_own_abstract),
    // Privilege.
    ("ids", "", privilege::ids),
    ("exec-gains", "PROGRAM", privilege::exec_gains),
    ("exec-same", "PROGRAM", privilege::exec_same),
    ("no-new-privs", "", privilege::no_new_privs),
    ("capabilities", "", privilege::capabilities),
    ("capset-raise", "", privilege::capset_raise),
    ("ptrace-attach", "", privilege::ptrace_attach),
    ("process-vm-write", "", privilege::process_vm_write),
    ("process-vm-read", "", privilege::process_vm_read),
    ("parent-mem", "", privilege::parent_mem),
    ("kill", "PID", privilege::kill),
    ("tiocsti", "FD", privilege::tiocsti),
    ("ioctl-fionread", "", privilege::ioctl_fionread),
    ("open-fd", "FD", privilege::open_fd),
    ("stdio", "", privilege::stdio),
    ("env-absent", "NAME…", privilege::env_absent),
    ("env-is", "NAME VALUE", privilege::env_is),
    ("scan-environ", "SECRET", privilege::scan_environ),
    ("unshare", "user|mount", privilege::unshare),
    ("personality", "no-randomize|query", privilege::personality),
    ("keyring", "", privilege::keyring),
    ("userfaultfd", "", privilege::userfaultfd),
    // Resources.
    ("fork-bomb", "MAX-PROCESSES", resources::fork_bomb),
    ("fork-some", "N", resources::fork_some),
    ("memory-hog", "MIB", resources::memory_hog),
    ("sleep-tree", "MARKER-PATH SECONDS", resources::sleep_tree),
    ("sleep-ms", "MILLISECONDS", resources::sleep_ms),
    ("flood", "BYTES", resources::flood),
    ("file-size", "PATH BYTES", resources::file_size),
    ("open-files", "MAX", resources::open_files),
];

/// A probe's arguments, with typed access that explains what is missing.
#[derive(Debug)]
pub struct Args {
    values: Vec<String>,
}

impl Args {
    pub fn str(&self, index: usize, what: &str) -> Result<&str, String> {
        self.values
            .get(index)
            .map(String::as_str)
            .ok_or_else(|| format!("missing argument {}: {what}", index + 1))
    }

    pub fn number<T: std::str::FromStr>(&self, index: usize, what: &str) -> Result<T, String> {
        let text = self.str(index, what)?;
        text.parse()
            .map_err(|_| format!("argument {} ({what}) is not a number: {text}", index + 1))
    }

    pub fn all(&self) -> &[String] {
        &self.values
    }
}

fn main() {
    let mut argv = std::env::args().skip(1);
    let case = argv.next().unwrap_or_default();
    let args = Args {
        values: argv.collect(),
    };
    let Some((name, usage, probe)) = PROBES.iter().find(|(name, _, _)| *name == case) else {
        eprintln!("usage: escape-probe CASE [ARGS…]; cases:");
        for (name, usage, _) in PROBES {
            eprintln!("  {name} {usage}");
        }
        std::process::exit(2);
    };
    match probe(&args) {
        Ok(report) => {
            let line = report.to_json(name);
            // One write, so a flood before it cannot interleave with the verdict.
            print_line(&line);
        }
        Err(message) => {
            eprintln!("escape-probe {name} {usage}: {message}");
            std::process::exit(2);
        }
    }
}

/// Print the verdict on a line of its own (a flood may have left a partial line).
fn print_line(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(format!("\n{line}\n").as_bytes());
    let _ = out.flush();
}
