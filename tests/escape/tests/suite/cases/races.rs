//! Time-of-check/time-of-use: a directory and a symlink swap places in a loop while the probe
//! writes through the name, from a thread inside the sandbox and from the host. Nothing may
//! land outside the roots or in a protected path, however the race falls; the twins point the
//! symlink at a harmless directory and show that the race really sends writes through it.
//!
//! The right reasons are those of the plain writes: the target does not exist in the view
//! (`ENOENT`) or Landlock refuses it (`EACCES`); a protected target is read-only (`EROFS`).
//! The checks are made by the kernel on the path it resolved, so no interleaving helps.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use super::args;
use super::protected::{git_with_hooks, hooks_intact};
use crate::suite::case::{Case, Errnos, Expect, Ran, both};
use crate::suite::host::{Swapper, Watch, entries};
use crate::suite::world::World;

const OUTSIDE: Errnos = both(&["ENOENT", "EACCES"]);
const PROTECTED: Errnos = both(&["EROFS", "EACCES"]);
/// Writes per race: enough for the swap to be seen both ways many times, bounded in time.
const ITERATIONS: &str = "2000";

pub fn swap_race_outside() -> Case {
    Case::new(Expect::Denied(OUTSIDE), |w| {
        args(&["swap-race", &w.out(""), ITERATIONS])
    })
    .check(|w, _| assert_eq!(entries(&w.outside), Vec::<String>::new(), "ESCAPE"))
}

pub fn swap_race_protected() -> Case {
    Case::new(Expect::Denied(PROTECTED), |w| {
        git_with_hooks(w);
        args(&["swap-race", &w.ws(".git/hooks"), ITERATIONS])
    })
    .check(|w, _| hooks_intact(w))
}

pub fn swap_race_inside() -> Case {
    Case::new(Expect::Succeeds, |w| {
        std::fs::create_dir(w.ws.join("race-target")).unwrap();
        args(&["swap-race", &w.ws("race-target"), ITERATIONS])
    })
    .check(|w, ran| {
        let landed = entries(&w.ws.join("race-target")).len() as u64;
        assert!(landed > 0);
        assert_eq!(landed, ran.count(), "{:?}", ran.verdict());
    })
}

/// `ws/slot` is a directory and `ws/slot-alt` a symlink to `target`; a host thread exchanges
/// them for as long as the probe writes into `slot/`.
fn host_swap(w: &mut World, target: &Path) -> Vec<String> {
    std::fs::create_dir(w.ws.join("slot")).unwrap();
    symlink(target, w.ws.join("slot-alt")).unwrap();
    let swapper = Swapper::start(&w.ws.join("slot"), &w.ws.join("slot-alt"));
    w.watch(Watch::Swapper(swapper));
    args(&["write-loop", "slot", ITERATIONS])
}

/// Whichever of `slot` and `slot-alt` is the real directory now.
fn real_slot(w: &World) -> PathBuf {
    let slot = w.ws.join("slot");
    if slot.is_symlink() {
        w.ws.join("slot-alt")
    } else {
        slot
    }
}

/// Every write that succeeded is in the real directory.
#[track_caller]
fn all_in_slot(w: &World, ran: &Ran) {
    let landed = entries(&real_slot(w)).len() as u64;
    assert_eq!(
        landed,
        ran.count(),
        "ESCAPE: a write the probe made did not land in the real directory: {:?}",
        ran.verdict()
    );
}

pub fn swap_race_host_outside() -> Case {
    Case::new(Expect::Denied(OUTSIDE), |w| {
        let outside = w.outside.clone();
        host_swap(w, &outside)
    })
    .check(|w, ran| {
        assert_eq!(entries(&w.outside), Vec::<String>::new(), "ESCAPE");
        all_in_slot(w, ran);
    })
}

pub fn swap_race_host_protected() -> Case {
    Case::new(Expect::Denied(PROTECTED), |w| {
        git_with_hooks(w);
        let hooks = w.ws.join(".git/hooks");
        host_swap(w, &hooks)
    })
    .check(|w, ran| {
        hooks_intact(w);
        all_in_slot(w, ran);
    })
}

pub fn swap_race_host_inside() -> Case {
    Case::new(Expect::Succeeds, |w| {
        let other = w.ws.join("other");
        std::fs::create_dir(&other).unwrap();
        host_swap(w, &other)
    })
    .check(|w, ran| {
        let landed = entries(&real_slot(w)).len() + entries(&w.ws.join("other")).len();
        assert_eq!(landed as u64, ran.count());
    })
}
