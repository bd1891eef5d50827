//! Privilege attempts: setuid programs, capabilities, `no_new_privs`, other processes (ptrace,
//! their memory, signals), the terminal, inherited descriptors and the environment.

use std::ffi::{c_int, c_long, c_ulong, c_void};
use std::fs;
use std::io;
use std::os::fd::AsRawFd;

use crate::Args;
use crate::report::Report;
use crate::sys;

/// Who the process is, as far as privileges go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ids {
    euid: u32,
    egid: u32,
    effective: u64,
    permitted: u64,
    bounding: u64,
    ambient: u64,
}

impl Ids {
    fn current() -> Self {
        let (effective, permitted) = capget().unwrap_or((u64::MAX, u64::MAX));
        let mut bounding = 0u64;
        let mut ambient = 0u64;
        for cap in 0..=sys::CAP_LAST_CAP {
            // SAFETY: prctl with integer arguments only.
            if unsafe { sys::prctl(sys::PR_CAPBSET_READ, c_ulong::try_from(cap).unwrap_or(0)) } == 1
            {
                bounding |= 1 << cap;
            }
            // SAFETY: as above.
            let is_set = unsafe {
                sys::prctl(
                    sys::PR_CAP_AMBIENT,
                    c_ulong::try_from(sys::PR_CAP_AMBIENT_IS_SET).unwrap_or(0),
                    c_ulong::try_from(cap).unwrap_or(0),
                    0 as c_ulong,
                    0 as c_ulong,
                )
            };
            if is_set == 1 {
                ambient |= 1 << cap;
            }
        }
        Self {
            // SAFETY: geteuid and getegid cannot fail.
            euid: unsafe { sys::geteuid() },
            // SAFETY: as above.
            egid: unsafe { sys::getegid() },
            effective,
            permitted,
            bounding,
            ambient,
        }
    }

    fn render(&self) -> String {
        format!(
            "euid={} egid={} cap_eff={:016x} cap_prm={:016x} cap_bnd={:016x} cap_amb={:016x}",
            self.euid, self.egid, self.effective, self.permitted, self.bounding, self.ambient
        )
    }

    fn parse(text: &str) -> Option<Self> {
        let field = |name: &str| {
            text.split_whitespace()
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        };
        let hex = |name: &str| u64::from_str_radix(field(name)?, 16).ok();
        Some(Self {
            euid: field("euid")?.parse().ok()?,
            egid: field("egid")?.parse().ok()?,
            effective: hex("cap_eff")?,
            permitted: hex("cap_prm")?,
            bounding: hex("cap_bnd")?,
            ambient: hex("cap_amb")?,
        })
    }

    /// Whether `self` has anything `before` did not.
    fn gained_over(&self, before: &Self) -> bool {
        self.euid != before.euid
            || self.egid != before.egid
            || self.effective & !before.effective != 0
            || self.permitted & !before.permitted != 0
            || self.ambient & !before.ambient != 0
    }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Effective and permitted capability sets (64 bits).
fn capget() -> io::Result<(u64, u64)> {
    let mut header = CapHeader {
        version: sys::LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: header and data are the version-3 layouts the kernel writes, alive for the call.
    let ret = unsafe { sys::syscall(sys::nr::CAPGET, &raw mut header, data.as_mut_ptr()) };
    sys::check_long(ret)?;
    let join = |lo: u32, hi: u32| u64::from(lo) | (u64::from(hi) << 32);
    Ok((
        join(data[0].effective, data[1].effective),
        join(data[0].permitted, data[1].permitted),
    ))
}

pub fn ids(_args: &Args) -> Result<Report, String> {
    Ok(Report::done(Ids::current().render()))
}

/// Run `program ids` and read the ids it reports.
fn ids_of(program: &str) -> io::Result<Ids> {
    let output = std::process::Command::new(program).arg("ids").output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let detail = stdout
        .lines()
        .find_map(|l| l.split("\"detail\":\"").nth(1)?.split('"').next())
        .unwrap_or("");
    Ids::parse(detail).ok_or_else(|| {
        io::Error::other(format!(
            "{program} did not report its ids (status {}): {stdout}",
            output.status
        ))
    })
}

pub fn exec_gains(args: &Args) -> Result<Report, String> {
    let program = args.str(0, "program to execute")?;
    let before = Ids::current();
    Ok(match ids_of(program) {
        Ok(after) if after.gained_over(&before) => Report::done(format!(
            "{program} gained privileges: before {}; after {}",
            before.render(),
            after.render()
        )),
        Ok(after) => Report::held(format!(
            "{program} ran with nothing gained: before {}; after {}",
            before.render(),
            after.render()
        )),
        Err(e) => Report::failed(&e, format!("cannot run {program}: {e}")),
    })
}

pub fn exec_same(args: &Args) -> Result<Report, String> {
    let program = args.str(0, "program to execute")?;
    let before = Ids::current();
    Ok(match ids_of(program) {
        Ok(after) if after == before => Report::done(format!(
            "{program} ran with the same ids: {}",
            after.render()
        )),
        Ok(after) => Report::held(format!(
            "{program} ran with different ids: before {}; after {}",
            before.render(),
            after.render()
        )),
        Err(e) => Report::failed(&e, format!("cannot run {program}: {e}")),
    })
}

pub fn no_new_privs(_args: &Args) -> Result<Report, String> {
    // SAFETY: prctl with integer arguments only.
    let prctl = unsafe {
        sys::prctl(
            sys::PR_GET_NO_NEW_PRIVS,
            0 as c_ulong,
            0 as c_ulong,
            0 as c_ulong,
            0 as c_ulong,
        )
    };
    let status = match fs::read_to_string("/proc/self/status") {
        Ok(text) => text
            .lines()
            .find(|l| l.starts_with("NoNewPrivs:"))
            .map_or_else(|| "no NoNewPrivs line".to_owned(), str::to_owned),
        Err(e) => format!("/proc/self/status unreadable ({})", sys::error_name(&e)),
    };
    let status_clear = status.starts_with("NoNewPrivs:") && status.trim_end().ends_with('0');
    let detail = format!(
        "prctl(PR_GET_NO_NEW_PRIVS) = {prctl}; status: {}",
        status.replace('\t', " ")
    );
    Ok(if prctl != 1 || status_clear {
        Report::done(format!("no_new_privs is not set: {detail}"))
    } else {
        Report::held(detail)
    })
}

pub fn capabilities(_args: &Args) -> Result<Report, String> {
    let ids = Ids::current();
    let any = ids.effective | ids.permitted | ids.bounding | ids.ambient;
    Ok(if any == 0 {
        Report::held(format!("no capabilities at all: {}", ids.render()))
    } else {
        Report::done(format!("holds capabilities: {}", ids.render()))
    })
}

pub fn capset_raise(_args: &Args) -> Result<Report, String> {
    let mut header = CapHeader {
        version: sys::LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let all = CapData {
        effective: u32::MAX,
        permitted: u32::MAX,
        inheritable: u32::MAX,
    };
    let data = [all; 2];
    // SAFETY: header and data are valid version-3 layouts, alive for the call.
    let ret = unsafe { sys::syscall(sys::nr::CAPSET, &raw mut header, data.as_ptr()) };
    Ok(Report::from_result(
        sys::check_long(ret).map(drop),
        "capset: raise every capability",
    ))
}

/// The parent, and every other process visible in `/proc`.
fn other_processes() -> Vec<sys::Pid> {
    // SAFETY: getppid cannot fail.
    let parent = unsafe { sys::getppid() };
    let own = sys::Pid::try_from(std::process::id()).unwrap_or(0);
    let mut pids: Vec<sys::Pid> = Vec::new();
    if parent > 0 {
        pids.push(parent);
    }
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            if let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<sys::Pid>().ok())
                && pid != own
                && !pids.contains(&pid)
            {
                pids.push(pid);
            }
        }
    }
    pids
}

pub fn ptrace_attach(_args: &Args) -> Result<Report, String> {
    let targets = other_processes();
    let mut report = Report::held("no other process is visible, not even the parent");
    let mut tried = Vec::new();
    for pid in targets {
        let null = std::ptr::null_mut::<c_void>();
        // SAFETY: PTRACE_ATTACH takes no pointers; the null addr/data are ignored.
        let ret = unsafe {
            sys::syscall(
                sys::nr::PTRACE,
                sys::PTRACE_ATTACH,
                c_long::from(pid),
                null,
                null,
            )
        };
        match sys::check_long(ret) {
            Ok(_) => {
                // SAFETY: detach from the process just attached; no pointers are used.
                unsafe {
                    sys::syscall(
                        sys::nr::PTRACE,
                        sys::PTRACE_DETACH,
                        c_long::from(pid),
                        null,
                        null,
                    )
                };
                return Ok(Report::done(format!("attached to pid {pid}")));
            }
            Err(e) => {
                if report.errno.is_none() {
                    report.errno = Some(sys::error_name(&e));
                }
                report.note(&e);
                tried.push(format!("{pid}: {}", sys::error_name(&e)));
            }
        }
    }
    if !tried.is_empty() {
        report.detail = format!("PTRACE_ATTACH {}", tried.join(", "));
    }
    Ok(report)
}

/// The process whose memory the probe goes after: the parent, else PID 1.
fn victim() -> sys::Pid {
    // SAFETY: getppid cannot fail.
    let parent = unsafe { sys::getppid() };
    if parent > 0 { parent } else { 1 }
}

/// An address below `vm.mmap_min_addr`, never mapped: a write that passes the permission
/// check fails with `EFAULT` there and changes nothing.
const UNMAPPED: usize = 0x1000;

fn process_vm(write: bool) -> Report {
    let pid = victim();
    let mut byte = [0u8; 1];
    let local = sys::IoVec {
        base: byte.as_mut_ptr().cast(),
        len: 1,
    };
    let remote = sys::IoVec {
        base: UNMAPPED as *mut c_void,
        len: 1,
    };
    let call = if write {
        sys::nr::PROCESS_VM_WRITEV
    } else {
        sys::nr::PROCESS_VM_READV
    };
    let name = if write {
        "process_vm_writev"
    } else {
        "process_vm_readv"
    };
    // SAFETY: `local` points at one byte of our own; the remote address is only ever used by
    // the kernel on the other process, where it is unmapped.
    let ret = unsafe {
        sys::syscall(
            call,
            c_long::from(pid),
            &raw const local,
            1 as c_long,
            &raw const remote,
            1 as c_long,
            0 as c_long,
        )
    };
    match sys::check_long(ret) {
        Ok(_) => Report::done(format!("{name} on pid {pid} transferred a byte")),
        Err(e) if e.raw_os_error() == Some(14) => {
            let mut report = Report::done(format!(
                "{name} on pid {pid} passed the permission check (EFAULT at the unmapped address {UNMAPPED:#x})"
            ));
            report.errno = Some("EFAULT".to_owned());
            report
        }
        Err(e) => Report::failed(&e, format!("{name} on pid {pid}: {e}")),
    }
}

pub fn parent_mem(_args: &Args) -> Result<Report, String> {
    let path = format!("/proc/{}/mem", victim());
    // Opening for writing is the escape; nothing is written.
    Ok(match sys::open_raw(&path, sys::O_WRONLY) {
        Ok(fd) => {
            sys::close_fd(fd);
            Report::done(format!("opened {path} for writing (nothing written)"))
        }
        Err(e) => Report::failed(&e, format!("open {path} for writing: {e}")),
    })
}

pub fn process_vm_write(_args: &Args) -> Result<Report, String> {
    Ok(process_vm(true))
}

pub fn process_vm_read(_args: &Args) -> Result<Report, String> {
    Ok(process_vm(false))
}

pub fn kill(args: &Args) -> Result<Report, String> {
    let pid: sys::Pid = args.number(0, "pid")?;
    // SAFETY: signal 0 only checks whether the signal could be sent.
    let ret = unsafe { sys::kill(pid, 0) };
    Ok(Report::from_result(
        sys::check(ret).map(drop),
        &format!("kill({pid}, 0)"),
    ))
}

pub fn tiocsti(args: &Args) -> Result<Report, String> {
    let fd: c_int = args.number(0, "descriptor")?;
    let byte: u8 = b'#';
    // SAFETY: TIOCSTI reads one byte from the pointer, which is valid for the call.
    let ret = unsafe { sys::ioctl(fd, sys::TIOCSTI, &raw const byte) };
    Ok(Report::from_result(
        sys::check(ret).map(drop),
        &format!("ioctl({fd}, TIOCSTI)"),
    ))
}

pub fn ioctl_fionread(_args: &Args) -> Result<Report, String> {
    let result = io::pipe().and_then(|(reader, _writer)| {
        let mut pending: c_int = -1;
        // SAFETY: FIONREAD writes one int through the pointer, valid for the call.
        let ret = unsafe { sys::ioctl(reader.as_raw_fd(), sys::FIONREAD, &raw mut pending) };
        sys::check(ret).map(drop)
    });
    Ok(Report::from_result(result, "ioctl(pipe, FIONREAD)"))
}

fn is_open(fd: c_int) -> bool {
    // SAFETY: F_GETFD only queries the descriptor table.
    let flags = unsafe { sys::fcntl(fd, sys::F_GETFD) };
    flags >= 0
}

pub fn open_fd(args: &Args) -> Result<Report, String> {
    let wanted: c_int = args.number(0, "descriptor")?;
    let open: Vec<c_int> = (3..4096).filter(|fd| is_open(*fd)).collect();
    // SAFETY: F_GETFD only queries the descriptor table.
    let ret = unsafe { sys::fcntl(wanted, sys::F_GETFD) };
    Ok(match sys::check(ret) {
        Ok(_) => Report::done(format!(
            "descriptor {wanted} is open; open above 2: {open:?}"
        )),
        Err(_) if !open.is_empty() => Report::done(format!(
            "descriptor {wanted} is closed, but these are open: {open:?}"
        )),
        Err(e) => Report::failed(
            &e,
            format!("descriptor {wanted} is closed, and so is every other above 2"),
        ),
    })
}

pub fn stdio(_args: &Args) -> Result<Report, String> {
    let open: Vec<c_int> = (0..3).filter(|fd| is_open(*fd)).collect();
    Ok(if open.len() == 3 {
        Report::done("stdin, stdout and stderr are open")
    } else {
        Report::held(format!("only {open:?} of stdin, stdout, stderr are open"))
    })
}

pub fn env_absent(args: &Args) -> Result<Report, String> {
    let names = args.all();
    if names.is_empty() {
        return Err("name at least one variable".to_owned());
    }
    let present: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| std::env::var_os(n).is_some())
        .collect();
    // Values are never printed: they are the secrets.
    Ok(if present.is_empty() {
        Report::held(format!("absent: {}", names.join(", ")))
    } else {
        Report::done(format!("present: {}", present.join(", ")))
    })
}

pub fn env_is(args: &Args) -> Result<Report, String> {
    let name = args.str(0, "variable")?;
    let want = args.str(1, "value")?;
    Ok(match std::env::var(name) {
        Ok(value) if value == want => Report::done(format!("{name} is {want}")),
        Ok(value) => Report::held(format!("{name} is {value}, not {want}")),
        Err(_) => Report::held(format!("{name} is not set")),
    })
}

pub fn scan_environ(args: &Args) -> Result<Report, String> {
    let secret = args.str(0, "secret")?;
    let mut paths = vec!["/proc/self/environ".to_owned()];
    if let Ok(entries) = fs::read_dir("/proc") {
        paths.extend(
            entries
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
                .map(|pid| format!("/proc/{pid}/environ")),
        );
    }
    let mut readable = 0u64;
    let mut report = Report::held("");
    for path in &paths {
        match fs::read(path) {
            Ok(bytes) => {
                readable += 1;
                if bytes
                    .windows(secret.len().max(1))
                    .any(|w| w == secret.as_bytes())
                {
                    return Ok(
                        Report::done(format!("the secret is in {path}")).with_count(readable)
                    );
                }
            }
            Err(e) => report.note(&e),
        }
    }
    report.detail = format!(
        "the secret is in none of the {readable} readable of {} environ files (others: {:?})",
        paths.len(),
        report.errnos
    );
    Ok(report.with_count(readable))
}

pub fn unshare(args: &Args) -> Result<Report, String> {
    let kind = args.str(0, "namespace")?;
    let flag = match kind {
        "user" => sys::CLONE_NEWUSER,
        "mount" => sys::CLONE_NEWNS,
        other => return Err(format!("unknown namespace {other}")),
    };
    // SAFETY: unshare with a flag; on success only this probe process is affected.
    let ret = unsafe { sys::unshare(flag) };
    Ok(Report::from_result(
        sys::check(ret).map(drop),
        &format!("unshare({kind})"),
    ))
}

pub fn personality(args: &Args) -> Result<Report, String> {
    let kind = args.str(0, "persona")?;
    let persona: c_ulong = match kind {
        "no-randomize" => sys::ADDR_NO_RANDOMIZE,
        "query" => 0xffff_ffff,
        other => return Err(format!("unknown persona {other}")),
    };
    // SAFETY: personality with an integer; affects only this process.
    let ret = unsafe { sys::personality(persona) };
    Ok(Report::from_result(
        sys::check(ret).map(drop),
        &format!("personality({kind})"),
    ))
}

pub fn keyring(_args: &Args) -> Result<Report, String> {
    // SAFETY: keyctl with integer arguments only.
    let ret = unsafe {
        sys::syscall(
            sys::nr::KEYCTL,
            sys::KEYCTL_GET_KEYRING_ID,
            sys::KEY_SPEC_SESSION_KEYRING,
            0 as c_long,
        )
    };
    Ok(match sys::check_long(ret) {
        Ok(id) => Report::done(format!("reached the session keyring ({id})")),
        Err(e) => Report::failed(&e, format!("keyctl(KEYCTL_GET_KEYRING_ID): {e}")),
    })
}

pub fn userfaultfd(_args: &Args) -> Result<Report, String> {
    // SAFETY: userfaultfd with flags only; the descriptor is closed right away.
    let ret = unsafe { sys::syscall(sys::nr::USERFAULTFD, c_long::from(sys::O_CLOEXEC)) };
    Ok(match sys::check_long(ret) {
        Ok(fd) => {
            sys::close_fd(c_int::try_from(fd).unwrap_or(-1));
            Report::done("userfaultfd returned a descriptor")
        }
        Err(e) => Report::failed(&e, format!("userfaultfd: {e}")),
    })
}
