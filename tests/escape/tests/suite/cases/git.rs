//! Git metadata that runs later on the host: the command plants a pointer or a repository
//! that does nothing in the sandbox, and the person's next `git status`, `git add`, `git
//! commit` on the host would run what it says. The write itself works in the sandbox (`.git`
//! must stay writable for a commit); the executor's check after the run moves it aside and
//! names it ("`.git/commondir` is protected"). Each case then runs git **on the host** where
//! the person would, and the planted program must not have run.
//!
//! Every variant was checked to run the planted program with the same host-side git when
//! nothing is quarantined (git 2.x: `core.fsmonitor` runs on `status`, hooks on `commit`,
//! filters on `add`).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use super::args;
use crate::suite::case::{Case, Expect, Ran};
use crate::suite::world::World;

/// git on the host with no global or system configuration.
fn host_git(w: &World, dir: &Path, git_args: &[&str]) -> std::process::Output {
    Command::new("git")
        .args(git_args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", &w.base)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap()
}

fn marker(w: &World) -> std::path::PathBuf {
    w.outside.join("planted-ran")
}

/// A committed repository in the workspace, a program that leaves a marker outside, and
/// `evil-common`: a copy of the repository's git directory whose config runs it
/// (`core.fsmonitor`, `core.hooksPath` to hooks that run it). `extra_config` is the person's
/// own configuration (`extensions.worktreeConfig`, a filter driver).
fn repo(w: &World, extra_config: &[(&str, &str)]) {
    let git = |a: &[&str]| {
        let out = host_git(w, &w.ws, a);
        assert!(out.status.success(), "git {a:?}: {out:?}");
    };
    git(&["init", "-q", "-b", "main", "."]);
    git(&["config", "user.name", "t"]);
    git(&["config", "user.email", "t@example.invalid"]);
    for (key, value) in extra_config {
        git(&[
            "config",
            key,
            &value.replace("$WS", &w.ws.display().to_string()),
        ]);
    }
    std::fs::write(w.ws.join("README"), "hi\n").unwrap();
    git(&["add", "README"]);
    git(&["commit", "-qm", "init"]);
    let script = w.ws.join("evil.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\ntouch {}\nexit 1\n", marker(w).display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let common = w.ws.join("evil-common");
    let copy = Command::new("cp")
        .arg("-a")
        .arg(w.ws.join(".git"))
        .arg(&common)
        .status()
        .unwrap();
    assert!(copy.success());
    std::fs::create_dir_all(w.ws.join("evil-hooks")).unwrap();
    for hook in ["pre-commit", "post-commit"] {
        std::fs::copy(&script, w.ws.join("evil-hooks").join(hook)).unwrap();
    }
    let mut config = std::fs::read_to_string(common.join("config")).unwrap();
    config.push_str(&format!(
        "[core]\n\tfsmonitor = {}\n\thooksPath = {}\n",
        script.display(),
        w.ws.join("evil-hooks").display()
    ));
    std::fs::write(common.join("config"), config).unwrap();
}

/// A config that runs the planted program.
fn evil_config(w: &World) -> String {
    format!("[core]\\nfsmonitor = {}\\n", w.ws.join("evil.sh").display())
}

/// After the run: the outcome names the protected path, and git on the host in `dir` —
/// status, add, commit — runs nothing planted.
fn planted(
    setup: impl FnOnce(&mut World) -> Vec<String> + 'static,
    protected: &'static str,
    dir: &'static str,
) -> Case {
    Case::new(Expect::Succeeds, setup).check(move |w, ran: &Ran| {
        let dir = w.ws.join(dir);
        std::fs::write(w.ws.join("README"), "changed\n").unwrap();
        for a in [
            &["status"][..],
            &["add", "-A"],
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@example.invalid",
                "commit",
                "-qm",
                "after",
            ],
        ] {
            let _ = host_git(w, &dir, a);
        }
        assert!(
            !marker(w).exists(),
            "ESCAPE: git on the host ran the planted program ({protected})"
        );
        assert!(
            ran.finished
                .stderr
                .contains(&format!("talaria: {protected} is protected")),
            "the outcome does not name {protected}: {}",
            ran.finished.stderr
        );
    })
}

pub fn git_commondir() -> Case {
    planted(
        |w| {
            repo(w, &[]);
            let target = w.ws.join("evil-common").display().to_string();
            args(&[
                "write-files",
                &format!("{}={target}", w.ws(".git/commondir")),
            ])
        },
        ".git/commondir",
        "",
    )
}

pub fn git_config_worktree() -> Case {
    planted(
        |w| {
            repo(w, &[("extensions.worktreeConfig", "true")]);
            let config = evil_config(w);
            args(&[
                "write-files",
                &format!("{}={config}", w.ws(".git/config.worktree")),
            ])
        },
        ".git/config.worktree",
        "",
    )
}

pub fn git_info_attributes() -> Case {
    // The person has a filter driver configured (as git-lfs users do); the planted attributes
    // apply it to every file.
    planted(
        |w| {
            repo(w, &[("filter.track.clean", "$WS/evil.sh")]);
            args(&[
                "write-files",
                &format!("{}=* filter=track\\n", w.ws(".git/info/attributes")),
            ])
        },
        ".git/info/attributes",
        "",
    )
}

pub fn git_worktrees() -> Case {
    planted(
        |w| {
            repo(w, &[("extensions.worktreeConfig", "true")]);
            let admin = w.ws(".git/worktrees/evil");
            args(&[
                "write-files",
                &format!("{admin}/HEAD=ref: refs/heads/main\\n"),
                &format!("{admin}/commondir=../..\\n"),
                &format!("{admin}/gitdir={}\\n", w.ws("wt/.git")),
                &format!("{admin}/config.worktree={}", evil_config(w)),
                &format!("{}=gitdir: {admin}\\n", w.ws("wt/.git")),
            ])
        },
        "wt/.git",
        "wt",
    )
}

pub fn git_modules() -> Case {
    planted(
        |w| {
            repo(w, &[]);
            let module = w.ws(".git/modules/evil");
            args(&[
                "write-files",
                &format!("{module}/HEAD=ref: refs/heads/main\\n"),
                &format!("{module}/objects/.keep="),
                &format!("{module}/refs/.keep="),
                &format!("{module}/config={}", evil_config(w)),
                &format!("{}=gitdir: ../.git/modules/evil\\n", w.ws("sub/.git")),
            ])
        },
        "sub/.git",
        "sub",
    )
}

pub fn git_new_nested_repo() -> Case {
    planted(
        |w| {
            repo(w, &[]);
            let nested = w.ws("nested/.git");
            args(&[
                "write-files",
                &format!("{nested}/HEAD=ref: refs/heads/main\\n"),
                &format!("{nested}/objects/.keep="),
                &format!("{nested}/refs/.keep="),
                &format!("{nested}/config={}", evil_config(w)),
            ])
        },
        "nested/.git",
        "nested",
    )
}

pub fn git_commit_files() -> Case {
    // ✓ What a commit writes in `.git` stays: nothing is quarantined, and the host's git
    // commits on top.
    Case::new(Expect::Succeeds, |w| {
        repo(w, &[]);
        args(&[
            "write-files",
            &format!("{}=message\\n", w.ws(".git/COMMIT_EDITMSG")),
            &format!(
                "{}=0000000000000000000000000000000000000000\\n",
                w.ws(".git/ORIG_HEAD")
            ),
            &format!("{}=ref: refs/heads/other\\n", w.ws(".git/HEAD")),
            &format!("{}=# pack-refs with: peeled\\n", w.ws(".git/packed-refs")),
        ])
    })
    .check(|w, ran| {
        assert!(
            !ran.finished.stderr.contains("is protected"),
            "{}",
            ran.finished.stderr
        );
        let out = host_git(
            w,
            &w.ws,
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@example.invalid",
                "commit",
                "-q",
                "--allow-empty",
                "-m",
                "on other",
            ],
        );
        assert!(out.status.success(), "{out:?}");
        assert!(!marker(w).exists());
    })
}

pub fn git_module_config_changed() -> Case {
    // An existing module's git directory (not mount-protected, unlike `.git/config`): its
    // config is rewritten to run the program. It is moved aside and the previous config put
    // back, so the module keeps working.
    Case::new(Expect::Succeeds, |w| {
        repo(w, &[]);
        let module = w.ws.join(".git/modules/lib");
        let staged = w.base.join("module-copy");
        let copy = Command::new("cp")
            .arg("-a")
            .arg(w.ws.join(".git"))
            .arg(&staged)
            .status()
            .unwrap();
        assert!(copy.success());
        std::fs::create_dir_all(w.ws.join(".git/modules")).unwrap();
        std::fs::rename(&staged, &module).unwrap();
        std::fs::create_dir_all(w.ws.join("lib")).unwrap();
        std::fs::write(w.ws.join("lib/.git"), "gitdir: ../.git/modules/lib\n").unwrap();
        let original = std::fs::read_to_string(module.join("config")).unwrap();
        std::fs::write(w.base.join("original-config"), original).unwrap();
        let config = w.ws(".git/modules/lib/config");
        args(&["write-files", &format!("{config}={}", evil_config(w))])
    })
    .check(|w, ran| {
        let dir = w.ws.join("lib");
        for a in [&["status"][..], &["add", "-A"]] {
            let _ = host_git(w, &dir, a);
        }
        assert!(
            !marker(w).exists(),
            "ESCAPE: git on the host ran the planted program (module config)"
        );
        assert!(
            ran.finished
                .stderr
                .contains("talaria: .git/modules/lib/config is protected: the command changed it")
                && ran
                    .finished
                    .stderr
                    .contains("the previous version put back"),
            "{}",
            ran.finished.stderr
        );
        assert_eq!(
            std::fs::read_to_string(w.ws.join(".git/modules/lib/config")).unwrap(),
            std::fs::read_to_string(w.base.join("original-config")).unwrap()
        );
        let status = host_git(w, &dir, &["status", "--short"]);
        assert!(status.status.success(), "{status:?}");
    })
}
