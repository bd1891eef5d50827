//! Resources, under a profile with small limits (32 tasks, 256 MiB, 1 MiB files, 64 open
//! files, 64 KiB of output): a fork bomb, a memory hog, a process tree that outlives its
//! timeout, an output flood, a huge file and a descriptor hoard, each next to the same thing
//! within the limits.
//!
//! The right reasons: `fork` fails with `EAGAIN` at the task limit (pids cgroup); the memory
//! hog is refused (`ENOMEM`, `RLIMIT_AS` locally) or killed (`SIGKILL`, the container's memory
//! cgroup); the timeout kills the whole tree, daemons included; output beyond the limit is
//! dropped by the caller; writes stop at `EFBIG` (`RLIMIT_FSIZE`) and opens at `EMFILE`
//! (`RLIMIT_NOFILE`).

use std::time::{Duration, Instant};

use talaria_bus::exec::ExitKind;

use super::{args, assert_absent};
use crate::suite::case::{Case, Expect, both};
use crate::suite::host::processes_with;
use crate::suite::world::{LIMIT_FILE_SIZE, LIMIT_OPEN_FILES, LIMIT_OUTPUT, LIMIT_TASKS, Profile};

pub fn fork_bomb() -> Case {
    Case::new(Expect::Denied(both(&["EAGAIN"])), |_| args(&["fork-bomb"]))
        .profile(Profile::Limits)
        .check(|_, ran| {
            assert!(
                ran.count() <= LIMIT_TASKS,
                "the bomb made {} processes under a limit of {LIMIT_TASKS}",
                ran.count()
            );
        })
}

pub fn fork_within_limit() -> Case {
    Case::new(Expect::Succeeds, |_| args(&["fork-some", "8"])).profile(Profile::Limits)
}

pub fn memory_hog() -> Case {
    Case::new(Expect::DeniedOrKilled(both(&["ENOMEM"])), |_| {
        args(&["memory-hog", "1024"])
    })
    .profile(Profile::Limits)
}

pub fn memory_within_limit() -> Case {
    Case::new(Expect::Succeeds, |_| args(&["memory-hog", "16"])).profile(Profile::Limits)
}

/// How long the daemon of [`timeout_kills_tree`] waits before writing its marker, and the
/// command's timeout.
const DAEMON_DELAY: u64 = 3;
const TIMEOUT: Duration = Duration::from_secs(1);

pub fn timeout_kills_tree() -> Case {
    // The probe starts a daemon (new session, reparented) that writes a marker after 3 s, and
    // then sleeps forever itself; the 1 s timeout must take both down.
    let started = Instant::now();
    Case::new(Expect::TimedOut, |w| {
        args(&["sleep-tree", &w.ws("outlived"), &DAEMON_DELAY.to_string()])
    })
    .profile(Profile::Limits)
    .timeout(TIMEOUT)
    .check(move |w, _| {
        let marker = w.ws.join("outlived");
        let token = marker.display().to_string();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !processes_with(&token).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(
            processes_with(&token),
            Vec::<String>::new(),
            "ESCAPE: processes of the timed-out command are still running"
        );
        // Past the daemon's delay: had it survived, its marker would be there.
        let wake = started + Duration::from_secs(DAEMON_DELAY + 1);
        std::thread::sleep(wake.saturating_duration_since(Instant::now()));
        assert_absent(&marker);
    })
}

pub fn finishes_within_timeout() -> Case {
    Case::new(Expect::Succeeds, |_| args(&["sleep-ms", "50"]))
        .profile(Profile::Limits)
        .timeout(Duration::from_secs(10))
}

/// Output the flood writes: far beyond the limit (a command that would run for minutes).
const FLOOD: usize = 1 << 30;

pub fn output_flood() -> Case {
    // Past eight times the limit (at least 1 MiB) the command is a flood: reading stops, the
    // command is killed, and the outcome says so; the 1 GiB were never written.
    Case::new(Expect::Capped, |_| args(&["flood", &FLOOD.to_string()]))
        .profile(Profile::Limits)
        .check(|_, ran| {
            let dropped = usize::try_from(ran.finished.dropped_bytes).unwrap();
            assert!(
                dropped < FLOOD / 16,
                "{dropped} bytes were read and dropped: the flood was not stopped"
            );
            assert!(
                matches!(ran.finished.exit, ExitKind::Signal(9) | ExitKind::Code(137)),
                "the flooding command was not killed: {:?}",
                ran.finished.exit
            );
            assert!(
                ran.finished
                    .stderr
                    .contains("talaria: output limit exceeded"),
                "{}",
                ran.finished.stderr
            );
            assert!(ran.verdict.is_none(), "the probe finished its flood");
        })
}

pub fn output_over_limit_below_flood() -> Case {
    // ✓ Three times the limit: the middle is dropped, but the command runs to its end.
    Case::new(Expect::Capped, |_| {
        args(&["flood", &(3 * LIMIT_OUTPUT).to_string()])
    })
    .profile(Profile::Limits)
    .check(|_, ran| {
        assert_eq!(
            ran.finished.exit,
            ExitKind::Code(0),
            "{}",
            ran.finished.stderr
        );
        assert!(!ran.finished.stderr.contains("output limit exceeded"));
        assert!(ran.finished.stdout.contains("bytes of output omitted"));
    })
}

pub fn output_within_limit() -> Case {
    Case::new(Expect::Succeeds, |_| args(&["flood", "1000"]))
        .profile(Profile::Limits)
        .check(|_, ran| {
            assert_eq!(ran.finished.dropped_bytes, 0);
            assert!(ran.finished.stdout.starts_with(&"x".repeat(1000)));
        })
}

pub fn file_size_limit() -> Case {
    Case::new(Expect::Denied(both(&["EFBIG"])), |_| {
        args(&["file-size", "big", &(4 * LIMIT_FILE_SIZE).to_string()])
    })
    .profile(Profile::Limits)
    .check(|w, _| {
        let size = std::fs::metadata(w.ws.join("big")).unwrap().len();
        assert_eq!(size, LIMIT_FILE_SIZE);
    })
}

pub fn file_within_size_limit() -> Case {
    Case::new(Expect::Succeeds, |_| args(&["file-size", "small", "4096"]))
        .profile(Profile::Limits)
        .check(|w, _| assert_eq!(std::fs::metadata(w.ws.join("small")).unwrap().len(), 4096))
}

pub fn open_files_limit() -> Case {
    Case::new(Expect::Denied(both(&["EMFILE"])), |_| {
        args(&["open-files", "1000"])
    })
    .profile(Profile::Limits)
    .check(|_, ran| assert!(ran.count() < LIMIT_OPEN_FILES, "{:?}", ran.verdict()))
}

pub fn open_files_within_limit() -> Case {
    Case::new(Expect::Succeeds, |_| args(&["open-files", "16"])).profile(Profile::Limits)
}
