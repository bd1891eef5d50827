//! Privilege: setuid programs, `no_new_privs`, capabilities, the parent process (ptrace, its
//! memory, signals), the terminal, inherited descriptors, and what the environment carries.
//!
//! The right reasons: a setuid program runs with the caller's ids and no capabilities
//! (`nosuid` mounts and `no_new_privs`; nothing to show as an errno); ptrace,
//! `process_vm_*` and `TIOCSTI` are refused by seccomp (`EPERM`, never the kernel's own
//! `ENOTTY` or `EFAULT`, which would mean the call got through); a host process is not in the
//! sandbox's PID namespace (`ESRCH`) or not signalable from its Landlock domain (`EPERM`); a
//! leaked descriptor was closed (`EBADF`); secrets were never put in the environment.

use std::os::unix::fs::{PermissionsExt, chown};
use std::path::Path;

use super::{arg, args};
use crate::suite::case::{Case, Errnos, Expect, both};
use crate::suite::host::{LEAKED_FD, leak_fd};
use crate::suite::world::{Backend, Profile, World};

const SECCOMP: Errnos = both(&["EPERM"]);

/// A copy of the probe at `path`, owned by `uid`, with `mode`.
fn probe_copy(w: &World, path: &Path, uid: u32, mode: u32) {
    std::fs::copy(&w.probe, path).unwrap();
    chown(path, Some(uid), Some(uid)).unwrap();
    // chown clears the setuid bits, so the mode comes after it.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A user that is neither root nor the caller.
const OTHER_UID: u32 = 4242;

pub fn setuid_root_binary() -> Case {
    Case::new(Expect::Held, |w| {
        probe_copy(w, &w.ws.join("suid-root"), 0, 0o4755);
        args(&["exec-gains", &w.ws("suid-root")])
    })
}

pub fn setuid_other_user_binary() -> Case {
    // The control run shows that the same program, run unconfined, does change its ids.
    Case::new(Expect::Held, |w| {
        probe_copy(w, &w.ws.join("suid-other"), OTHER_UID, 0o6755);
        args(&["exec-gains", &w.ws("suid-other")])
    })
    .control(&[])
}

pub fn setuid_binary_in_system_dir() -> Case {
    // Not in the workspace but in a read root: the image's /bin for the container, the
    // skills directory (the one read root a test may write to on the host) locally.
    Case::new(Expect::Held, |w| {
        let (host_path, inside) = match w.backend {
            Backend::Local => {
                let path = w.skills.join("suid-other");
                (path.clone(), arg(&path))
            }
            Backend::Oci => (
                w.rootfs.join("bin/suid-other"),
                "/bin/suid-other".to_owned(),
            ),
        };
        probe_copy(w, &host_path, OTHER_UID, 0o6755);
        args(&["exec-gains", &inside])
    })
}

pub fn exec_plain_copy() -> Case {
    Case::new(Expect::Succeeds, |w| {
        probe_copy(w, &w.ws.join("plain"), 0, 0o755);
        args(&["exec-same", &w.ws("plain")])
    })
}

pub fn no_new_privs() -> Case {
    Case::new(Expect::Held, |_| args(&["no-new-privs"]))
        .profile(Profile::ProcVisible)
        .control(&[])
        .check(|_, ran| {
            let detail = &ran.verdict().detail;
            assert!(
                detail.contains("prctl(PR_GET_NO_NEW_PRIVS) = 1")
                    && detail.contains("status: NoNewPrivs: 1"),
                "{detail}"
            );
        })
}

pub fn no_capabilities() -> Case {
    // The control run (as root on the host) shows the probe does see capabilities.
    Case::new(Expect::Held, |_| args(&["capabilities"])).control(&[])
}

pub fn capset_raise() -> Case {
    Case::new(Expect::Denied(SECCOMP), |_| args(&["capset-raise"]))
}

pub fn ptrace_parent() -> Case {
    Case::new(Expect::Denied(SECCOMP), |_| args(&["ptrace-attach"]))
}

pub fn process_vm_writev_parent() -> Case {
    // Unconfined, the write reaches the parent's (unmapped) address: EFAULT, reported as done.
    Case::new(Expect::Denied(SECCOMP), |_| args(&["process-vm-write"])).control(&[])
}

pub fn process_vm_readv_parent() -> Case {
    Case::new(Expect::Denied(SECCOMP), |_| args(&["process-vm-read"])).control(&[])
}

pub fn parent_mem_write() -> Case {
    // The parent's memory through /proc: the parent, else PID 1.
    Case::new(Expect::Denied(both(&["EACCES", "EPERM", "ENOENT"])), |_| {
        args(&["parent-mem"])
    })
    .profile(Profile::ProcVisible)
    .control(&[])
}

pub fn runtime_binary_overwrite() -> Case {
    // Open the binary of every other visible process for writing through /proc/<pid>/exe.
    // ETXTBSY (the binary is running) would be luck, not a boundary, so it is not accepted.
    Case::new(Expect::Denied(both(&["EACCES", "EPERM"])), |_| {
        args(&["proc-exe-write"])
    })
    .profile(Profile::ProcVisible)
}

pub fn signal_host_process() -> Case {
    // The test process itself: the executor's caller.
    Case::new(Expect::Denied(both(&["ESRCH", "EPERM"])), |_| {
        args(&["kill", &std::process::id().to_string()])
    })
    .control(&[])
}

pub fn signal_own_group() -> Case {
    Case::new(Expect::Succeeds, |_| args(&["kill", "0"]))
}

pub fn tiocsti_stdin() -> Case {
    Case::new(Expect::Denied(SECCOMP), |_| args(&["tiocsti", "0"]))
}

pub fn tiocsti_stdout() -> Case {
    Case::new(Expect::Denied(SECCOMP), |_| args(&["tiocsti", "1"]))
}

pub fn ioctl_allowed() -> Case {
    Case::new(Expect::Succeeds, |_| args(&["ioctl-fionread"]))
}

pub fn open_controlling_tty() -> Case {
    // No controlling terminal (ENXIO), or no /dev/tty in the view at all (ENOENT, EACCES).
    Case::new(Expect::Denied(both(&["ENXIO", "ENOENT", "EACCES"])), |_| {
        args(&["open-write", "/dev/tty"])
    })
}

pub fn inherited_descriptor() -> Case {
    Case::new(Expect::Denied(both(&["EBADF"])), |w| {
        std::fs::write(w.outside.join("secret"), "s3cret").unwrap();
        let leaked = leak_fd(&w.outside.join("secret"));
        w.leaked.push(leaked);
        args(&["open-fd", &LEAKED_FD.to_string()])
    })
    // Unconfined, the probe does find the leaked descriptor.
    .control(&[])
}

pub fn stdio_open() -> Case {
    Case::new(Expect::Succeeds, |_| args(&["stdio"]))
}

/// Secrets a careless caller's environment holds.
const SECRETS: &[(&str, &str)] = &[
    ("TALARIA_ESCAPE_SECRET", "sk-escape-do-not-leak"),
    ("OPENAI_API_KEY", "sk-openai-do-not-leak"),
    ("ANTHROPIC_API_KEY", "sk-ant-do-not-leak"),
    ("GITHUB_TOKEN", "ghp_do_not_leak"),
    ("AWS_SECRET_ACCESS_KEY", "aws-do-not-leak"),
];

pub fn secrets_in_environment() -> Case {
    Case::new(Expect::Held, |w| {
        for (name, value) in SECRETS {
            w.set_caller_env(name, value);
        }
        let mut argv = vec!["env-absent".to_owned()];
        argv.extend(SECRETS.iter().map(|(n, _)| (*n).to_owned()));
        argv
    })
}

pub fn ld_preload_not_inherited() -> Case {
    Case::new(Expect::Held, |w| {
        let preload = w.ws("evil.so");
        w.set_caller_env("LD_PRELOAD", &preload);
        w.set_caller_env("LD_LIBRARY_PATH", &w.ws(""));
        w.set_caller_env("LD_AUDIT", &preload);
        args(&["env-absent", "LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT"])
    })
}

pub fn passed_environment() -> Case {
    Case::new(Expect::Succeeds, |w| {
        w.set_caller_env("LANG", "C.UTF-8");
        args(&["env-is", "LANG", "C.UTF-8"])
    })
}

pub fn secret_in_proc_environ() -> Case {
    // Every environ the sandbox can read (its own, its parent's, …) is free of the secret.
    Case::new(Expect::Held, |w| {
        for (name, value) in SECRETS {
            w.set_caller_env(name, value);
        }
        args(&["scan-environ", "do-not-leak"])
    })
    .profile(Profile::ProcVisible)
    .check(|_, ran| {
        assert!(
            ran.count() >= 1,
            "read no environ at all: {:?}",
            ran.verdict()
        )
    })
}

/// No file under `path` (or `path` itself) carries a setuid or setgid bit on the host.
#[track_caller]
fn assert_no_setid_bits(path: &Path) {
    let mut pending = vec![path.to_owned()];
    while let Some(p) = pending.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        assert_eq!(
            meta.permissions().mode() & 0o6000,
            0,
            "ESCAPE: {} has mode {:o} on the host",
            p.display(),
            meta.permissions().mode()
        );
        if meta.is_dir() {
            pending.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
}

/// `cp /bin/sh x; chmod 4755 x`: the copy is the caller's (root's here), plain 0755, and the
/// command tries to make it setuid by path, by descriptor and with `fchmodat2`.
fn chmod_setid(mode: &'static str, expect: Expect) -> Case {
    Case::new(expect, move |w| {
        probe_copy(w, &w.ws.join("x"), 0, 0o755);
        args(&["chmod-every-way", &w.ws("x"), mode])
    })
    .check(|w, _| assert_no_setid_bits(&w.ws.join("x")))
}

pub fn setuid_chmod() -> Case {
    chmod_setid("4755", Expect::Denied(SECCOMP))
}

pub fn setgid_chmod() -> Case {
    chmod_setid("2755", Expect::Denied(SECCOMP))
}

pub fn chmod_plain() -> Case {
    chmod_setid("755", Expect::Succeeds)
}

/// Files created with the bits already in the mode: `open(O_CREAT)`, `mknodat`, `openat2`
/// (refused with `ENOSYS`, then `openat`, as a program falls back), `mkdir`.
fn create_setid(mode: &'static str, expect: Expect) -> Case {
    Case::new(expect, move |w| {
        std::fs::create_dir(w.ws.join("made")).unwrap();
        args(&["create-with-mode", &w.ws("made"), mode])
    })
    .check(|w, _| assert_no_setid_bits(&w.ws.join("made")))
}

pub fn setuid_create() -> Case {
    create_setid("4755", Expect::Denied(SECCOMP))
}

pub fn setgid_create() -> Case {
    create_setid("2755", Expect::Denied(SECCOMP))
}

pub fn create_plain_mode() -> Case {
    create_setid("755", Expect::Succeeds)
}

/// The local helper's command runs as `nobody` when the caller is root; the container still
/// runs as root (see the `oci_ignore` in `tests/all.rs`).
const NOT_ROOT: Errnos = Errnos {
    local: &["EACCES"],
    oci: &["EACCES"],
};

pub fn read_root_only_in_read_root() -> Case {
    // A root-only file under a read root (the skills directory: the one read root a test may
    // write to): root's DAC override would read it; nobody cannot.
    Case::new(Expect::Denied(NOT_ROOT), |w| {
        let secret = w.skills.join("root-only");
        std::fs::write(&secret, "secret\n").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        args(&["read", &arg(&secret)])
    })
}

pub fn read_public_in_read_root() -> Case {
    Case::new(Expect::Succeeds, |w| {
        let public = w.skills.join("public");
        std::fs::write(&public, "public\n").unwrap();
        std::fs::set_permissions(&public, std::fs::Permissions::from_mode(0o644)).unwrap();
        args(&["read", &arg(&public)])
    })
}

pub fn read_etc_shadow() -> Case {
    // `/etc` is a read root locally (0640 root:shadow: nobody is neither); the container's
    // image has no shadow file at all.
    Case::new(
        Expect::Denied(Errnos {
            local: &["EACCES"],
            oci: &["ENOENT"],
        }),
        |_| args(&["read", "/etc/shadow"]),
    )
}

pub fn write_root_owned_workspace_file() -> Case {
    // The workspace belongs to root, the command is nobody: the idmapped workspace mount shows
    // root's files as the command's own, and what it writes stays root's on the host.
    Case::new(Expect::Succeeds, |w| {
        let file = w.ws.join("root-owned");
        std::fs::write(&file, "before\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        args(&["overwrite", &w.ws("root-owned")])
    })
    .check(|w, _| {
        use std::os::unix::fs::MetadataExt;
        let file = w.ws.join("root-owned");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), super::MARK);
        assert_eq!(std::fs::metadata(&file).unwrap().uid(), 0);
    })
}

pub fn create_in_workspace_stays_root_owned() -> Case {
    Case::new(Expect::Succeeds, |w| args(&["create", &w.ws("made-here")])).check(|w, _| {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(w.ws.join("made-here")).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (0, 0));
    })
}
