//! Shipped → /etc → $TALARIA_HOME: later files replace earlier ones of the same name.

use std::path::Path;

use talaria_policy::{PolicySet, PolicySource};

use super::support::PolicyDir;

#[test]
fn later_directories_replace_earlier_profiles() {
    let system = PolicyDir::new(&[
        (
            "workspace-write",
            "description = \"site\"\n[limits]\ntasks = 5\n",
        ),
        ("site-only", "description = \"from /etc\"\n"),
    ]);
    let user = PolicyDir::new(&[(
        "workspace-write",
        "description = \"mine\"\n[limits]\ntasks = 6\n",
    )]);
    let set = PolicySet::load(
        &[PolicySource::Shipped, system.source(), user.source()],
        super::support::BACKENDS,
    )
    .unwrap();

    let ww = set.profile("workspace-write").unwrap();
    assert_eq!(ww.description(), "mine");
    assert_eq!(ww.limits().tasks, Some(6));
    assert_eq!(ww.origin(), user.file("workspace-write"));
    assert_eq!(
        ww.replaced(),
        [
            "<shipped>/workspace-write.toml".to_owned(),
            system.file("workspace-write")
        ]
    );
    // A replacement is whole: the user's file does not inherit the shipped one's keys.
    assert_eq!(ww.limits().memory, None);
    assert_eq!(
        set.profile("site-only").unwrap().origin(),
        system.file("site-only")
    );
    assert!(set.profile("read-only").unwrap().replaced().is_empty());
    // Profiles that inherit workspace-write see the effective (replaced) one.
    assert_eq!(set.profile("networked").unwrap().limits().tasks, Some(6));
}

#[test]
fn inheriting_the_own_name_tweaks_the_replaced_definition() {
    let user = PolicyDir::new(&[(
        "workspace-write",
        "inherits = \"workspace-write\"\n[limits]\ntasks = 64\n",
    )]);
    let set = user.load_over_shipped().unwrap();
    let ww = set.profile("workspace-write").unwrap();
    assert_eq!(ww.limits().tasks, Some(64));
    // Everything else comes from the shipped definition.
    assert_eq!(ww.limits().memory, Some(4 << 30));
    assert!(ww.description().starts_with("Write the workspace"));
    assert_eq!(set.profile("networked").unwrap().limits().tasks, Some(64));
}

#[test]
fn a_broken_replaced_file_still_refuses_the_set() {
    let system = PolicyDir::new(&[("read-only", "[limits]\ntasks = -1\n")]);
    let user = PolicyDir::new(&[("read-only", "description = \"fine\"\n")]);
    let err = PolicySet::load(
        &[PolicySource::Shipped, system.source(), user.source()],
        super::support::BACKENDS,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}:2: bad value for `limits.tasks`: must be greater than 0",
            system.file("read-only")
        )
    );
}

#[test]
fn tools_tables_override_per_tool() {
    let system = PolicyDir::new(&[(
        "tools",
        "[tools]\nterminal = \"networked\"\nbrowser = \"read-only\"\n",
    )]);
    let user = PolicyDir::new(&[("tools", "[tools]\n\nterminal = \"read-only\"\n")]);
    let set = PolicySet::load(
        &[PolicySource::Shipped, system.source(), user.source()],
        super::support::BACKENDS,
    )
    .unwrap();
    // A later directory's entry beats an earlier one's, and any entry beats the declared default.
    assert_eq!(
        set.profile_for_tool("terminal", Some("workspace-write"))
            .unwrap()
            .name(),
        "read-only"
    );
    assert_eq!(
        set.profile_for_tool("browser", None).unwrap().name(),
        "read-only"
    );
    // A tool no table maps runs under its declared default.
    assert_eq!(
        set.profile_for_tool("patch", Some("workspace-write"))
            .unwrap()
            .name(),
        "workspace-write"
    );
    assert!(set.tool_mapping("patch").is_none());
    let terminal = set.tool_mapping("terminal").unwrap();
    assert_eq!(terminal.origin, format!("{}:3", user.file("tools")));
    assert_eq!(
        set.tools().map(|t| t.tool.as_str()).collect::<Vec<_>>(),
        ["browser", "terminal"]
    );
    assert!(set.profile_for_tool("skill_view", Some("nope")).is_err());
    // tools.toml is not a profile.
    assert!(set.profile("tools").is_err());
}

#[test]
fn standard_sources() {
    assert_eq!(
        PolicySource::standard(Path::new("/home/u/.talaria")),
        [
            PolicySource::Shipped,
            PolicySource::Dir("/etc/talaria/policies".into()),
            PolicySource::Dir("/home/u/.talaria/policies".into()),
        ]
    );
}
