//! The few libc functions and kernel constants the probe needs, declared by hand: the probe
//! uses std alone so that build.rs can link it statically without building crates.
//!
//! Constants are the kernel's (asm-generic values, the same on x86_64 and aarch64, unless a
//! `cfg` says otherwise).

use std::ffi::{CString, c_char, c_int, c_long, c_uint, c_ulong, c_void};
use std::io;

pub type Pid = c_int;

unsafe extern "C" {
    pub fn syscall(number: c_long, ...) -> c_long;
    pub fn fork() -> Pid;
    pub fn waitpid(pid: Pid, status: *mut c_int, options: c_int) -> Pid;
    pub fn kill(pid: Pid, signal: c_int) -> c_int;
    pub fn _exit(code: c_int) -> !;
    pub fn pause() -> c_int;
    pub fn setsid() -> Pid;
    pub fn setpgid(pid: Pid, pgid: Pid) -> c_int;
    pub fn getppid() -> Pid;
    pub fn geteuid() -> c_uint;
    pub fn getegid() -> c_uint;
    pub fn ioctl(fd: c_int, request: c_ulong, ...) -> c_int;
    pub fn prctl(option: c_int, ...) -> c_int;
    pub fn mount(
        source: *const c_char,
        target: *const c_char,
        fstype: *const c_char,
        flags: c_ulong,
        data: *const c_void,
    ) -> c_int;
    pub fn umount2(target: *const c_char, flags: c_int) -> c_int;
    pub fn unshare(flags: c_int) -> c_int;
    pub fn socket(domain: c_int, kind: c_int, protocol: c_int) -> c_int;
    pub fn connect(fd: c_int, address: *const c_void, length: c_uint) -> c_int;
    pub fn personality(persona: c_ulong) -> c_int;
    pub fn mmap(
        address: *mut c_void,
        length: usize,
        protection: c_int,
        flags: c_int,
        fd: c_int,
        offset: i64,
    ) -> *mut c_void;
    pub fn munmap(address: *mut c_void, length: usize) -> c_int;
    pub fn signal(signal: c_int, handler: usize) -> usize;
    pub fn fcntl(fd: c_int, command: c_int, ...) -> c_int;
    pub fn truncate(path: *const c_char, length: i64) -> c_int;
    pub fn close(fd: c_int) -> c_int;
    pub fn write(fd: c_int, buffer: *const c_void, count: usize) -> isize;
    pub fn open(path: *const c_char, flags: c_int, ...) -> c_int;
    pub fn umask(mask: c_uint) -> c_uint;
}

#[cfg(target_arch = "x86_64")]
pub mod nr {
    use std::ffi::c_long;
    pub const PTRACE: c_long = 101;
    pub const CAPGET: c_long = 125;
    pub const CAPSET: c_long = 126;
    pub const KEYCTL: c_long = 250;
    pub const MKNODAT: c_long = 259;
    pub const NAME_TO_HANDLE_AT: c_long = 303;
    pub const PROCESS_VM_READV: c_long = 310;
    pub const PROCESS_VM_WRITEV: c_long = 311;
    pub const RENAMEAT2: c_long = 316;
    pub const USERFAULTFD: c_long = 323;
}

#[cfg(target_arch = "aarch64")]
pub mod nr {
    use std::ffi::c_long;
    pub const PTRACE: c_long = 117;
    pub const CAPGET: c_long = 90;
    pub const CAPSET: c_long = 91;
    pub const KEYCTL: c_long = 219;
    pub const MKNODAT: c_long = 33;
    pub const NAME_TO_HANDLE_AT: c_long = 264;
    pub const PROCESS_VM_READV: c_long = 270;
    pub const PROCESS_VM_WRITEV: c_long = 271;
    pub const RENAMEAT2: c_long = 276;
    pub const USERFAULTFD: c_long = 282;
}

/// Allocated after the syscall tables were unified: the same number everywhere.
pub const NR_IO_URING_SETUP: c_long = 425;
pub const NR_OPENAT2: c_long = 437;
pub const NR_FCHMODAT2: c_long = 452;
pub const O_CREAT: c_int = 0o100;
pub const O_EXCL: c_int = 0o200;
pub const S_IFREG: c_uint = 0o100_000;

/// `struct open_how` of `openat2(2)`.
#[repr(C)]
pub struct OpenHow {
    pub flags: u64,
    pub mode: u64,
    pub resolve: u64,
}

pub const AT_FDCWD: c_int = -100;
pub const RENAME_EXCHANGE: c_uint = 2;
pub const O_WRONLY: c_int = 1;
pub const O_CLOEXEC: c_int = 0o2_000_000;
pub const O_NOCTTY: c_int = 0o400;
pub const F_GETFD: c_int = 1;
pub const S_IFBLK: c_uint = 0o060_000;
pub const MNT_DETACH: c_int = 2;
pub const CLONE_NEWUSER: c_int = 0x1000_0000;
pub const CLONE_NEWNS: c_int = 0x0002_0000;
pub const PTRACE_ATTACH: c_long = 16;
pub const PTRACE_DETACH: c_long = 17;
pub const TIOCSTI: c_ulong = 0x5412;
pub const FIONREAD: c_ulong = 0x541B;
pub const PR_CAPBSET_READ: c_int = 23;
pub const PR_GET_NO_NEW_PRIVS: c_int = 39;
pub const PR_CAP_AMBIENT: c_int = 47;
pub const PR_CAP_AMBIENT_IS_SET: c_int = 1;
pub const CAP_LAST_CAP: c_int = 40;
pub const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
pub const ADDR_NO_RANDOMIZE: c_ulong = 0x004_0000;
pub const PROT_READ_WRITE: c_int = 3;
pub const MAP_PRIVATE_ANONYMOUS_NORESERVE: c_int = 0x02 | 0x20 | 0x4000;
pub const SIGKILL: c_int = 9;
pub const SIGXFSZ: c_int = 25;
pub const SIG_IGN: usize = 1;
pub const KEYCTL_GET_KEYRING_ID: c_long = 0;
pub const KEY_SPEC_SESSION_KEYRING: c_long = -3;

pub const AF_UNIX: c_int = 1;
pub const AF_INET: c_int = 2;
pub const AF_INET6: c_int = 10;
pub const AF_NETLINK: c_int = 16;
pub const AF_PACKET: c_int = 17;
pub const AF_VSOCK: c_int = 40;
pub const SOCK_STREAM: c_int = 1;
pub const SOCK_DGRAM: c_int = 2;
pub const SOCK_RAW: c_int = 3;
pub const SOCK_CLOEXEC: c_int = 0o2_000_000;
pub const IPPROTO_ICMP: c_int = 1;
pub const NETLINK_ROUTE: c_int = 0;
/// `htons(ETH_P_ALL)`.
pub const ETH_P_ALL_BE: c_int = 0x0300;
pub const VMADDR_CID_HOST: u32 = 2;

/// `struct iovec`.
#[repr(C)]
pub struct IoVec {
    pub base: *mut c_void,
    pub len: usize,
}

/// `struct sockaddr_vm`.
#[repr(C)]
pub struct SockaddrVm {
    pub family: u16,
    pub reserved: u16,
    pub port: u32,
    pub cid: u32,
    pub flags: u8,
    pub zero: [u8; 3],
}

/// The error of the last failed call.
pub fn last_error() -> io::Error {
    io::Error::last_os_error()
}

/// `Ok(ret)` for a non-negative return, the errno otherwise.
pub fn check(ret: c_int) -> io::Result<c_int> {
    if ret < 0 { Err(last_error()) } else { Ok(ret) }
}

/// [`check`] for `syscall(2)`'s `long`.
pub fn check_long(ret: c_long) -> io::Result<c_long> {
    if ret < 0 { Err(last_error()) } else { Ok(ret) }
}

/// A path or string argument for a C call.
pub fn c_string(text: &str) -> io::Result<CString> {
    CString::new(text).map_err(|_| io::Error::from_raw_os_error(22))
}

/// `open(2)` with raw flags, returning the descriptor (the caller closes it).
pub fn open_raw(path: &str, flags: c_int) -> io::Result<c_int> {
    let path = c_string(path)?;
    // SAFETY: `path` is a valid NUL-terminated string that outlives the call.
    check(unsafe { open(path.as_ptr(), flags | O_CLOEXEC, 0o644) })
}

/// Close a descriptor the probe opened.
pub fn close_fd(fd: c_int) {
    // SAFETY: the caller owns `fd` and does not use it afterwards.
    unsafe { close(fd) };
}

/// `socket(2)`; the descriptor is closed before returning.
pub fn try_socket(domain: c_int, kind: c_int, protocol: c_int) -> io::Result<()> {
    // SAFETY: plain system call with integer arguments.
    let fd = check(unsafe { socket(domain, kind | SOCK_CLOEXEC, protocol) })?;
    close_fd(fd);
    Ok(())
}

/// The kernel's name for an errno value (asm-generic numbering).
pub fn errno_name(errno: i32) -> String {
    let name = match errno {
        1 => "EPERM",
        2 => "ENOENT",
        3 => "ESRCH",
        4 => "EINTR",
        5 => "EIO",
        6 => "ENXIO",
        7 => "E2BIG",
        8 => "ENOEXEC",
        9 => "EBADF",
        10 => "ECHILD",
        11 => "EAGAIN",
        12 => "ENOMEM",
        13 => "EACCES",
        14 => "EFAULT",
        16 => "EBUSY",
        17 => "EEXIST",
        18 => "EXDEV",
        19 => "ENODEV",
        20 => "ENOTDIR",
        21 => "EISDIR",
        22 => "EINVAL",
        23 => "ENFILE",
        24 => "EMFILE",
        25 => "ENOTTY",
        26 => "ETXTBSY",
        27 => "EFBIG",
        28 => "ENOSPC",
        30 => "EROFS",
        31 => "EMLINK",
        36 => "ENAMETOOLONG",
        38 => "ENOSYS",
        39 => "ENOTEMPTY",
        40 => "ELOOP",
        88 => "ENOTSOCK",
        93 => "EPROTONOSUPPORT",
        94 => "ESOCKTNOSUPPORT",
        95 => "EOPNOTSUPP",
        97 => "EAFNOSUPPORT",
        98 => "EADDRINUSE",
        99 => "EADDRNOTAVAIL",
        100 => "ENETDOWN",
        101 => "ENETUNREACH",
        104 => "ECONNRESET",
        110 => "ETIMEDOUT",
        111 => "ECONNREFUSED",
        113 => "EHOSTUNREACH",
        _ => return format!("E{errno}"),
    };
    name.to_owned()
}

/// The errno name of an I/O error (`EUNKNOWN` for errors that carry none, such as a timeout
/// std reports itself).
pub fn error_name(error: &io::Error) -> String {
    match error.raw_os_error() {
        Some(errno) => errno_name(errno),
        None if error.kind() == io::ErrorKind::TimedOut => "ETIMEDOUT".to_owned(),
        None => "EUNKNOWN".to_owned(),
    }
}
