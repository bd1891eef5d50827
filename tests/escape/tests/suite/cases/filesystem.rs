//! Writes (and reads) outside the roots, by every path trick, each next to the same trick
//! inside the workspace.
//!
//! The right reasons: a path outside every root does not exist for the command (`ENOENT`: the
//! local backend's private root and the container's root hold only the roots), or Landlock
//! refuses it (`EACCES`, on kernels where the local backend keeps the host's tree visible); a
//! link or rename between two mounts is `EXDEV`; a read-only root is `EROFS` (its mount) or
//! `EACCES` (Landlock).

use std::os::unix::fs::symlink;

use super::{MARK, arg, args, assert_absent, assert_contents};
use crate::suite::case::{Case, Errnos, Expect, both};
use crate::suite::world::Profile;

/// A path outside every root.
const OUTSIDE: Errnos = both(&["ENOENT", "EACCES"]);
/// Linking or renaming between a root and outside.
const ACROSS: Errnos = both(&["ENOENT", "EACCES", "EXDEV"]);
/// Writing to a read-only root.
const READ_ONLY: Errnos = both(&["EROFS", "EACCES"]);
/// A path that does not exist in the view and sits under a read-only skeleton directory.
const OUTSIDE_UNDER_READ_ONLY: Errnos = both(&["ENOENT", "EACCES", "EROFS"]);

pub fn write_outside_absolute() -> Case {
    Case::new(Expect::Denied(OUTSIDE), |w| {
        args(&["create", &w.out("abs")])
    })
    .check(|w, _| assert_absent(&w.outside.join("abs")))
}

pub fn write_inside_absolute() -> Case {
    Case::new(Expect::Succeeds, |w| args(&["create", &w.ws("abs")]))
        .check(|w, _| assert_contents(&w.ws.join("abs"), MARK))
}

pub fn write_outside_relative() -> Case {
    // cwd is <base>/ws; the outside directory is <base>/outside.
    Case::new(Expect::Denied(OUTSIDE), |_| {
        args(&["create", "../outside/rel"])
    })
    .check(|w, _| assert_absent(&w.outside.join("rel")))
}

pub fn write_inside_relative() -> Case {
    Case::new(Expect::Succeeds, |w| {
        std::fs::create_dir(w.ws.join("sub")).unwrap();
        args(&["create", "sub/../rel"])
    })
    .check(|w, _| assert_contents(&w.ws.join("rel"), MARK))
}

/// Enough `..` to climb to `/` from any working directory.
const CLIMB: &str = "../../../../../../../../../../../../../../../..";

pub fn write_outside_dotdot() -> Case {
    Case::new(Expect::Denied(OUTSIDE), |w| {
        args(&["create", &format!("{CLIMB}{}", w.out("dotdot"))])
    })
    .check(|w, _| assert_absent(&w.outside.join("dotdot")))
}

pub fn write_inside_dotdot() -> Case {
    Case::new(Expect::Succeeds, |w| {
        args(&["create", &format!("{CLIMB}{}", w.ws("dotdot"))])
    })
    .check(|w, _| assert_contents(&w.ws.join("dotdot"), MARK))
}

pub fn write_outside_symlink_dir() -> Case {
    Case::new(Expect::Denied(OUTSIDE), |w| {
        symlink(&w.outside, w.ws.join("planted-dir")).unwrap();
        args(&["create", "planted-dir/new"])
    })
    .check(|w, _| assert_absent(&w.outside.join("new")))
}

pub fn write_outside_symlink_file() -> Case {
    Case::new(Expect::Denied(OUTSIDE), |w| {
        std::fs::write(w.outside.join("target"), "original").unwrap();
        symlink(w.outside.join("target"), w.ws.join("planted-file")).unwrap();
        args(&["overwrite", "planted-file"])
    })
    .check(|w, _| assert_contents(&w.outside.join("target"), "original"))
}

pub fn write_inside_symlink() -> Case {
    Case::new(Expect::Succeeds, |w| {
        std::fs::create_dir(w.ws.join("real-dir")).unwrap();
        symlink(w.ws.join("real-dir"), w.ws.join("link-in")).unwrap();
        args(&["create", "link-in/new"])
    })
    .check(|w, _| assert_contents(&w.ws.join("real-dir/new"), MARK))
}

pub fn write_outside_dangling_symlink() -> Case {
    Case::new(Expect::Denied(OUTSIDE), |w| {
        symlink(w.outside.join("dangling-new"), w.ws.join("dangling")).unwrap();
        args(&["create", "dangling"])
    })
    .check(|w, _| assert_absent(&w.outside.join("dangling-new")))
}

pub fn write_inside_dangling_symlink() -> Case {
    Case::new(Expect::Succeeds, |w| {
        symlink(w.ws.join("made-through-link"), w.ws.join("dangling-in")).unwrap();
        args(&["create", "dangling-in"])
    })
    .check(|w, _| assert_contents(&w.ws.join("made-through-link"), MARK))
}

pub fn write_outside_own_symlink() -> Case {
    Case::new(Expect::Denied(OUTSIDE), |w| {
        args(&["symlink-write", &w.out("via-own-link"), "own-link"])
    })
    .check(|w, _| assert_absent(&w.outside.join("via-own-link")))
}

pub fn hardlink_outside_in() -> Case {
    Case::new(Expect::Denied(ACROSS), |w| {
        std::fs::write(w.outside.join("secret"), "s3cret").unwrap();
        args(&["link", &w.out("secret"), "stolen-link"])
    })
    .check(|w, _| assert_absent(&w.ws.join("stolen-link")))
}

pub fn hardlink_inside_out() -> Case {
    Case::new(Expect::Denied(ACROSS), |w| {
        std::fs::write(w.ws.join("mine"), "mine").unwrap();
        args(&["link", "mine", &w.out("planted-link")])
    })
    .check(|w, _| assert_absent(&w.outside.join("planted-link")))
}

pub fn hardlink_inside() -> Case {
    Case::new(Expect::Succeeds, |w| {
        std::fs::write(w.ws.join("mine"), "mine").unwrap();
        std::fs::create_dir(w.ws.join("d")).unwrap();
        args(&["link", "mine", "d/second-name"])
    })
    .check(|w, _| assert_contents(&w.ws.join("d/second-name"), "mine"))
}

pub fn rename_outside_in() -> Case {
    Case::new(Expect::Denied(ACROSS), |w| {
        std::fs::write(w.outside.join("secret"), "s3cret").unwrap();
        args(&["rename", &w.out("secret"), "stolen"])
    })
    .check(|w, _| {
        assert_contents(&w.outside.join("secret"), "s3cret");
        assert_absent(&w.ws.join("stolen"));
    })
}

pub fn rename_inside_out() -> Case {
    Case::new(Expect::Denied(ACROSS), |w| {
        std::fs::write(w.ws.join("mine"), "mine").unwrap();
        args(&["rename", "mine", &w.out("mine")])
    })
    .check(|w, _| {
        assert_contents(&w.ws.join("mine"), "mine");
        assert_absent(&w.outside.join("mine"));
    })
}

pub fn rename_inside() -> Case {
    Case::new(Expect::Succeeds, |w| {
        std::fs::write(w.ws.join("mine"), "mine").unwrap();
        std::fs::create_dir(w.ws.join("d")).unwrap();
        args(&["rename", "mine", "d/mine"])
    })
    .check(|w, _| assert_contents(&w.ws.join("d/mine"), "mine"))
}

pub fn exchange_across_boundary() -> Case {
    Case::new(Expect::Denied(ACROSS), |w| {
        std::fs::write(w.ws.join("mine"), "mine").unwrap();
        std::fs::write(w.outside.join("secret"), "s3cret").unwrap();
        args(&["exchange", "mine", &w.out("secret")])
    })
    .check(|w, _| {
        assert_contents(&w.ws.join("mine"), "mine");
        assert_contents(&w.outside.join("secret"), "s3cret");
    })
}

pub fn exchange_inside() -> Case {
    Case::new(Expect::Succeeds, |w| {
        std::fs::write(w.ws.join("one"), "1").unwrap();
        std::fs::write(w.ws.join("two"), "2").unwrap();
        args(&["exchange", "one", "two"])
    })
    .check(|w, _| {
        assert_contents(&w.ws.join("one"), "2");
        assert_contents(&w.ws.join("two"), "1");
    })
}

pub fn write_via_proc_self_root() -> Case {
    Case::new(Expect::Denied(OUTSIDE), |w| {
        args(&["create", &format!("/proc/self/root{}", w.out("via-proc"))])
    })
    .profile(Profile::ProcVisible)
    .check(|w, _| assert_absent(&w.outside.join("via-proc")))
}

pub fn write_via_proc_self_root_inside() -> Case {
    Case::new(Expect::Succeeds, |w| {
        args(&["create", &format!("/proc/self/root{}", w.ws("via-proc"))])
    })
    .profile(Profile::ProcVisible)
    .check(|w, _| assert_contents(&w.ws.join("via-proc"), MARK))
}

pub fn write_via_proc_pid_cwd() -> Case {
    // Every other visible process's /proc/<pid>/root and /proc/<pid>/cwd/../../..: a process
    // whose root or cwd lies outside the sandbox's view would lead back to the host's tree.
    Case::new(Expect::Denied(OUTSIDE), |w| {
        args(&["proc-pid-write", &w.out("via-pid")])
    })
    .profile(Profile::ProcVisible)
    .check(|w, _| assert_absent(&w.outside.join("via-pid")))
}

pub fn write_via_proc_self_cwd() -> Case {
    Case::new(Expect::Succeeds, |_| {
        args(&["create", "/proc/self/cwd/via-cwd"])
    })
    .profile(Profile::ProcVisible)
    .check(|w, _| assert_contents(&w.ws.join("via-cwd"), MARK))
}

pub fn mkdir_outside() -> Case {
    Case::new(Expect::Denied(OUTSIDE), |w| {
        args(&["mkdir", &w.out("newdir")])
    })
    .check(|w, _| assert_absent(&w.outside.join("newdir")))
}

pub fn mkdir_inside() -> Case {
    Case::new(Expect::Succeeds, |w| args(&["mkdir", &w.ws("newdir")]))
        .check(|w, _| assert!(w.ws.join("newdir").is_dir()))
}

pub fn unlink_outside() -> Case {
    Case::new(Expect::Denied(OUTSIDE), |w| {
        std::fs::write(w.outside.join("victim"), "keep").unwrap();
        args(&["unlink", &w.out("victim")])
    })
    .check(|w, _| assert_contents(&w.outside.join("victim"), "keep"))
}

pub fn unlink_inside() -> Case {
    Case::new(Expect::Succeeds, |w| {
        std::fs::write(w.ws.join("victim"), "go").unwrap();
        args(&["unlink", "victim"])
    })
    .check(|w, _| assert_absent(&w.ws.join("victim")))
}

/// A name in `/etc` unique to this test process.
fn etc_name() -> String {
    format!("/etc/talaria-escape-{}", std::process::id())
}

pub fn write_system_directory() -> Case {
    Case::new(Expect::Denied(READ_ONLY), |_| {
        args(&["create", &etc_name()])
    })
    .check(|w, _| {
        assert_absent(std::path::Path::new(&etc_name()));
        assert_absent(&w.rootfs.join(etc_name().trim_start_matches('/')));
    })
}

pub fn write_scratch_directory() -> Case {
    Case::new(Expect::Succeeds, |w| {
        let note = w.tmp().join("note");
        args(&["create", &arg(&note)])
    })
    .check(|_, ran| {
        let path = ran
            .verdict()
            .detail
            .trim_start_matches("create ")
            .to_owned();
        assert_contents(std::path::Path::new(&path), MARK);
    })
}

pub fn truncate_read_root() -> Case {
    Case::new(Expect::Denied(READ_ONLY), |w| {
        args(&["truncate", &arg(&w.skills.join("escape/SKILL.md"))])
    })
    .check(|w, _| assert_contents(&w.skills.join("escape/SKILL.md"), "# a skill\n"))
}

pub fn truncate_inside() -> Case {
    Case::new(Expect::Succeeds, |w| {
        std::fs::write(w.ws.join("long"), "long text").unwrap();
        args(&["truncate", "long"])
    })
    .check(|w, _| assert_contents(&w.ws.join("long"), ""))
}

pub fn read_outside() -> Case {
    Case::new(Expect::Denied(OUTSIDE), |w| {
        std::fs::write(w.outside.join("secret"), "s3cret").unwrap();
        args(&["read", &w.out("secret")])
    })
}

pub fn read_inside() -> Case {
    Case::new(Expect::Succeeds, |w| {
        std::fs::write(w.ws.join("notes"), "notes").unwrap();
        args(&["read", "notes"])
    })
}

pub fn read_talaria_home() -> Case {
    Case::new(Expect::Denied(OUTSIDE), |w| {
        args(&["read", &arg(&w.home.join("state.db"))])
    })
}

pub fn write_talaria_home() -> Case {
    // The home holds the mount point of skills/, so in the sandbox's view it is a directory of
    // the read-only skeleton: EROFS is the right reason too.
    Case::new(Expect::Denied(OUTSIDE_UNDER_READ_ONLY), |w| {
        args(&["create", &arg(&w.home.join("policies.toml"))])
    })
    .check(|w, _| assert_absent(&w.home.join("policies.toml")))
}

pub fn read_skills() -> Case {
    Case::new(Expect::Succeeds, |w| {
        args(&["read", &arg(&w.skills.join("escape/SKILL.md"))])
    })
}
