//! The Talaria home is never reachable, except `skills` read-only.

use std::path::{Path, PathBuf};

use talaria_policy::{PolicyError, Surface};

use super::support::{Layout, PolicyDir, errors_of};

/// Whether any root grants access to `target` (the root is `target` or one of its ancestors).
fn reaches(roots: &[PathBuf], target: &Path) -> bool {
    roots.iter().any(|root| target.starts_with(root))
}

#[test]
fn no_shipped_profile_reaches_the_database_or_config() {
    let layout = Layout::new();
    let set = super::support::shipped();
    let secrets = [
        layout.talaria_home.join("state.db"),
        layout.talaria_home.join("config.toml"),
        layout.talaria_home.clone(),
    ];
    for profile in set.profiles() {
        for surface in [Surface::Owner, Surface::AllowlistedUser, Surface::Webhook] {
            let resolved = profile.narrow(surface).resolve(&layout.ctx()).unwrap();
            let fs = &resolved.spec.filesystem;
            for secret in &secrets {
                assert!(
                    !reaches(&fs.read, secret),
                    "{} reads {}",
                    profile.name(),
                    secret.display()
                );
                assert!(
                    !reaches(&fs.write, secret),
                    "{} writes {}",
                    profile.name(),
                    secret.display()
                );
            }
            let skill = layout.talaria_home.join("skills/demo/SKILL.md");
            assert!(
                !reaches(&fs.write, &skill),
                "{} writes skills",
                profile.name()
            );
            assert!(
                reaches(&fs.read, &skill),
                "{} cannot read skills",
                profile.name()
            );
        }
    }
}

#[test]
fn roots_containing_the_home_are_refused_at_load() {
    let (dir, errors) = errors_of(&[(
        "p",
        "[filesystem]\nread = [\n  \"/usr\",\n  \"${home}\",\n]\nwrite = [\"/\"]\n",
    )]);
    let file = dir.file("p");
    assert_eq!(
        errors,
        vec![
            format!(
                "{file}:4: bad value for `filesystem.read`: profile `p` grants access to ${{home}}, which contains the Talaria home; list narrower roots"
            ),
            format!(
                "{file}:6: bad value for `filesystem.write`: profile `p` grants access to /, which contains the Talaria home; list narrower roots"
            ),
        ]
    );
}

#[test]
fn only_skills_read_only_inside_the_home() {
    let (dir, errors) = errors_of(&[(
        "p",
        "[filesystem]\nread = [\"${talaria_home}\", \"${talaria_home}/skills/x\", \"${talaria_home}/state.db\"]\nwrite = [\"${talaria_home}/skills\"]\n",
    )]);
    let file = dir.file("p");
    let inside = |line: usize, key: &str, path: &str| {
        format!(
            "{file}:{line}: bad value for `{key}`: profile `p` grants access to {path}, inside the Talaria home; only ${{talaria_home}}/skills may be granted, read-only"
        )
    };
    assert_eq!(
        errors,
        vec![
            inside(2, "filesystem.read", "${talaria_home}"),
            inside(2, "filesystem.read", "${talaria_home}/state.db"),
            inside(3, "filesystem.write", "${talaria_home}/skills"),
        ]
    );
}

#[test]
fn a_workspace_that_contains_the_home_is_refused_at_resolve() {
    let layout = Layout::new();
    let set = super::support::shipped();
    let ww = set.profile("workspace-write").unwrap();
    let mut ctx = layout.ctx();
    ctx.workspace = layout.home.clone();
    ctx.cwd = layout.home.clone();
    assert_eq!(
        ww.resolve(&ctx).unwrap_err().to_string(),
        format!(
            "profile `workspace-write` grants access to ${{workspace}} ({}), which contains the Talaria home {}; list narrower roots",
            layout.home.display(),
            layout.talaria_home.display()
        )
    );

    // The same through a symlink: paths are judged after resolving links.
    let link = layout.root.path().join("innocent");
    std::os::unix::fs::symlink(&layout.home, &link).unwrap();
    ctx.workspace = link.clone();
    ctx.cwd = link;
    assert!(matches!(
        ww.resolve(&ctx).unwrap_err(),
        PolicyError::ContainsTalariaHome { .. }
    ));
}

#[test]
fn a_workspace_inside_the_home_is_refused_at_resolve() {
    let layout = Layout::new();
    let set = super::support::shipped();
    let mut ctx = layout.ctx();
    ctx.workspace = layout.talaria_home.join("skills/demo");
    ctx.cwd = ctx.workspace.clone();
    let err = set
        .profile("workspace-write")
        .unwrap()
        .resolve(&ctx)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "profile `workspace-write` grants write access to ${{workspace}} ({}), which is inside the Talaria home {}; only ${{talaria_home}}/skills may be granted, read-only",
            ctx.workspace.display(),
            layout.talaria_home.display()
        )
    );
}

#[test]
fn literal_roots_and_symlinked_homes_are_checked_on_real_paths() {
    let layout = Layout::new();
    // A literal path the load-time check cannot judge.
    let dir = PolicyDir::new(&[(
        "p",
        &format!(
            "[filesystem]\nread = [\"{}\"]\n",
            layout.home.parent().unwrap().display()
        ),
    )]);
    let set = dir.load().unwrap();
    assert!(matches!(
        set.profile("p")
            .unwrap()
            .resolve(&layout.ctx())
            .unwrap_err(),
        PolicyError::ContainsTalariaHome { .. }
    ));

    // A Talaria home that is a symlink into the workspace is still found.
    let real_home = layout.workspace.join("talaria-data");
    std::fs::create_dir(&real_home).unwrap();
    let linked = layout.root.path().join("th-link");
    std::os::unix::fs::symlink(&real_home, &linked).unwrap();
    let mut ctx = layout.ctx();
    ctx.talaria_home = linked;
    let set = super::support::shipped();
    assert!(matches!(
        set.profile("workspace-write")
            .unwrap()
            .resolve(&ctx)
            .unwrap_err(),
        PolicyError::ContainsTalariaHome { .. }
    ));
}
