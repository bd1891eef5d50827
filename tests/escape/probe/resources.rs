//! Resource attempts: a fork bomb, a memory hog, a process tree that outlives its command, an
//! output flood, a huge file, and a descriptor leak. Each is bounded, so a sandbox that fails
//! open makes the test fail rather than take the host down.

use std::ffi::c_int;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::Args;
use crate::report::Report;
use crate::sys;

/// Every bomb process forks this many times, down to this depth: 3 + 9 + … + 243 = 363
/// processes if nothing stops it.
const BOMB_FANOUT: u32 = 3;
const BOMB_DEPTH: u32 = 5;
const BOMB_TOTAL: u64 = 363;

/// The bomb itself, in a forked child: fork, let every child fork too, and report each fork
/// (`F`) or failure (the errno as one byte) on `report`. Only async-signal-safe calls.
fn bomb(report: c_int) -> ! {
    let mut depth = 0;
    let mut tries = 0;
    loop {
        if depth >= BOMB_DEPTH || tries >= BOMB_FANOUT {
            loop {
                // SAFETY: pause only waits for a signal (the SIGKILL that ends the bomb).
                unsafe { sys::pause() };
            }
        }
        tries += 1;
        // SAFETY: the bomb's processes are single-threaded and call only fork, write, pause.
        let pid = unsafe { sys::fork() };
        if pid == 0 {
            depth += 1;
            tries = 0;
            // SAFETY: writes one byte from a valid buffer to an inherited pipe.
            unsafe { sys::write(report, b"F".as_ptr().cast(), 1) };
        } else if pid < 0 {
            let errno = u8::try_from(sys::last_error().raw_os_error().unwrap_or(0)).unwrap_or(0);
            // SAFETY: as above.
            unsafe { sys::write(report, (&raw const errno).cast(), 1) };
            tries = BOMB_FANOUT;
        }
    }
}

pub fn fork_bomb(_args: &Args) -> Result<Report, String> {
    let (reader, writer) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
    // The reader thread starts before the bomb: once the bomb holds every pid the sandbox
    // allows, the probe could not start a thread any more.
    let (bytes, received) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = reader;
        let mut byte = [0u8; 1];
        while std::io::Read::read_exact(&mut reader, &mut byte).is_ok() {
            if bytes.send(byte[0]).is_err() {
                break;
            }
        }
    });
    // SAFETY: the child only runs `bomb`, which calls nothing but the async-signal-safe fork,
    // write and pause, so forking while the reader thread runs is sound.
    let root = unsafe { sys::fork() };
    if root < 0 {
        return Ok(Report::failed(&sys::last_error(), "could not fork at all"));
    }
    if root == 0 {
        // SAFETY: a new process group for the bomb, so one kill reaches all of it.
        unsafe { sys::setpgid(0, 0) };
        bomb(writer.as_raw_fd());
    }
    drop(writer);
    let (mut forks, mut errnos) = (0u64, Vec::new());
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && forks < BOMB_TOTAL {
        // Once a fork has failed, a quiet spell means the bomb is held.
        let wait = if errnos.is_empty() { 1000 } else { 300 };
        match received.recv_timeout(Duration::from_millis(wait)) {
            Ok(b'F') => forks += 1,
            Ok(errno) => errnos.push(i32::from(errno)),
            Err(_) if !errnos.is_empty() => break,
            Err(_) => {}
        }
    }
    // SAFETY: SIGKILL to the bomb's own process group, which the probe is not in.
    unsafe { sys::kill(-root, sys::SIGKILL) };
    let mut status = 0;
    // SAFETY: reaps the bomb's root, our child; `status` is valid for the write.
    unsafe { sys::waitpid(root, &raw mut status, 0) };
    let mut report = match errnos.first() {
        Some(first) => {
            let mut report = Report::failed(
                &std::io::Error::from_raw_os_error(*first),
                format!(
                    "the bomb made {forks} processes before fork failed ({} failures)",
                    errnos.len()
                ),
            );
            for errno in &errnos {
                report.note(&std::io::Error::from_raw_os_error(*errno));
            }
            report
        }
        None if forks >= BOMB_TOTAL => Report::done(format!(
            "all {forks} forks of the bomb succeeded: nothing held it"
        )),
        None => Report::held(format!(
            "the bomb made {forks} processes and then stalled without an error"
        )),
    };
    report.count = Some(forks);
    Ok(report)
}

pub fn fork_some(args: &Args) -> Result<Report, String> {
    let n: u32 = args.number(0, "number of children")?;
    for i in 0..n {
        // SAFETY: the probe is single-threaded; the child exits at once.
        let pid = unsafe { sys::fork() };
        if pid == 0 {
            // SAFETY: leave the child without running any of the parent's cleanup.
            unsafe { sys::_exit(0) };
        }
        if pid < 0 {
            return Ok(Report::failed(
                &sys::last_error(),
                format!("fork {} of {n} failed", i + 1),
            ));
        }
        let mut status = 0;
        // SAFETY: reaps our own child; `status` is valid for the write.
        unsafe { sys::waitpid(pid, &raw mut status, 0) };
    }
    Ok(Report::done(format!("forked and reaped {n} children")).with_count(u64::from(n)))
}

pub fn memory_hog(args: &Args) -> Result<Report, String> {
    let mib: usize = args.number(0, "MiB")?;
    let length = mib << 20;
    // SAFETY: a fresh anonymous private mapping; no existing memory is affected.
    let address = unsafe {
        sys::mmap(
            std::ptr::null_mut(),
            length,
            sys::PROT_READ_WRITE,
            sys::MAP_PRIVATE_ANONYMOUS_NORESERVE,
            -1,
            0,
        )
    };
    if address as isize == -1 {
        return Ok(Report::failed(
            &sys::last_error(),
            format!("mmap of {mib} MiB refused"),
        ));
    }
    let bytes = address.cast::<u8>();
    for offset in (0..length).step_by(4096) {
        // SAFETY: `offset` is inside the mapping of `length` bytes made above.
        unsafe { bytes.add(offset).write_volatile(1) };
    }
    // SAFETY: unmaps exactly the mapping made above.
    unsafe { sys::munmap(address, length) };
    Ok(Report::done(format!("mapped and touched {mib} MiB")))
}

pub fn sleep_tree(args: &Args) -> Result<Report, String> {
    let marker = args.str(0, "marker path")?.to_owned();
    let seconds: u64 = args.number(1, "seconds")?;
    // SAFETY: single-threaded; the child only forks, sleeps and writes a file.
    let child = unsafe { sys::fork() };
    if child == 0 {
        // A daemon: a new session, then a grandchild that the child abandons.
        // SAFETY: setsid and fork in a single-threaded child.
        unsafe { sys::setsid() };
        // SAFETY: as above.
        if unsafe { sys::fork() } == 0 {
            std::thread::sleep(Duration::from_secs(seconds));
            let _ = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&marker)
                .and_then(|mut f| f.write_all(b"outlived the timeout\n"));
            // SAFETY: end the grandchild without the parent's cleanup.
            unsafe { sys::_exit(0) };
        }
        // SAFETY: as above.
        unsafe { sys::_exit(0) };
    }
    if child < 0 {
        return Ok(Report::failed(&sys::last_error(), "fork"));
    }
    let mut status = 0;
    // SAFETY: reaps our own child; `status` is valid for the write.
    unsafe { sys::waitpid(child, &raw mut status, 0) };
    // Outlive every timeout: only a kill ends this.
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

pub fn sleep_ms(args: &Args) -> Result<Report, String> {
    let ms: u64 = args.number(0, "milliseconds")?;
    std::thread::sleep(Duration::from_millis(ms));
    Ok(Report::done(format!("slept {ms} ms")))
}

pub fn flood(args: &Args) -> Result<Report, String> {
    let total: u64 = args.number(0, "bytes")?;
    let chunk = vec![b'x'; 64 * 1024];
    let mut out = std::io::stdout().lock();
    let mut written = 0u64;
    while written < total {
        let n = usize::try_from(total - written).map_or(chunk.len(), |r| r.min(chunk.len()));
        if let Err(e) = out.write_all(&chunk[..n]) {
            return Ok(Report::failed(&e, format!("after {written} bytes")).with_count(written));
        }
        written += n as u64;
    }
    let _ = out.flush();
    Ok(Report::done(format!("wrote {written} bytes of output")).with_count(written))
}

pub fn file_size(args: &Args) -> Result<Report, String> {
    let path = args.str(0, "file")?;
    let total: u64 = args.number(1, "bytes")?;
    // SAFETY: ignoring SIGXFSZ turns the limit into an EFBIG error the probe can report.
    unsafe { sys::signal(sys::SIGXFSZ, sys::SIG_IGN) };
    let mut file = match OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
    {
        Ok(file) => file,
        Err(e) => return Ok(Report::failed(&e, format!("create {path}: {e}"))),
    };
    let chunk = vec![0u8; 64 * 1024];
    let mut written = 0u64;
    while written < total {
        let n = usize::try_from(total - written).map_or(chunk.len(), |r| r.min(chunk.len()));
        match file.write(&chunk[..n]) {
            Ok(0) => break,
            Ok(done) => written += done as u64,
            Err(e) => {
                return Ok(
                    Report::failed(&e, format!("{path} stopped at {written} bytes"))
                        .with_count(written),
                );
            }
        }
    }
    Ok(Report::done(format!("wrote {written} bytes to {path}")).with_count(written))
}

pub fn open_files(args: &Args) -> Result<Report, String> {
    let max: u64 = args.number(0, "descriptors to open")?;
    let stdout = std::io::stdout();
    let mut held: Vec<OwnedFd> = Vec::new();
    while (held.len() as u64) < max {
        match stdout.as_fd().try_clone_to_owned() {
            Ok(fd) => held.push(fd),
            Err(e) => {
                let count = held.len() as u64;
                return Ok(Report::failed(
                    &e,
                    format!("the descriptor table filled up after {count} more"),
                )
                .with_count(count));
            }
        }
    }
    Ok(Report::done(format!("opened {max} descriptors")).with_count(max))
}
