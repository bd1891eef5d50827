//! Inheritance: per-key replacement, appended approvals, cycles, missing parents.

use talaria_policy::NetworkMode;

use super::support::{Layout, PolicyDir, errors_of};

const BASE: &str = r#"
description = "base"
[filesystem]
read = ["/usr", "/bin"]
write = ["${workspace}"]
[env]
pass = ["PATH"]
set = { A = "1", B = "2" }
[limits]
tasks = 100
memory = "1GiB"
"#;

#[test]
fn child_keys_replace_parent_keys_whole() {
    let dir = PolicyDir::new(&[
        ("base", BASE),
        (
            "child",
            "inherits = \"base\"\n[filesystem]\nread = [\"/usr\"]\n[env]\nset = { C = \"3\" }\n[limits]\ntasks = 10\n",
        ),
    ]);
    let set = dir.load().unwrap();
    let child = set.profile("child").unwrap();
    let json = child.to_json();
    // Lists replace, they do not append.
    assert_eq!(json["filesystem"]["read"], serde_json::json!(["/usr"]));
    // Keys the child does not set are inherited.
    assert_eq!(
        json["filesystem"]["write"],
        serde_json::json!(["${workspace}"])
    );
    assert_eq!(json["description"], "base");
    assert_eq!(json["env"]["pass"], serde_json::json!(["PATH"]));
    // env.set is one key: replaced whole.
    assert_eq!(json["env"]["set"], serde_json::json!({"C": "3"}));
    // Limits are separate keys.
    assert_eq!(child.limits().tasks, Some(10));
    assert_eq!(child.limits().memory, Some(1 << 30));
    assert_eq!(child.inherits(), Some("base"));

    let layout = Layout::new();
    let resolved = child.resolve(&layout.ctx()).unwrap();
    assert_eq!(
        resolved.spec.filesystem.read,
        [std::path::PathBuf::from("/usr")]
    );
}

#[test]
fn chains_resolve_recursively() {
    let dir = PolicyDir::new(&[
        ("a", "[limits]\ntasks = 1\nopen_files = 7\n"),
        ("b", "inherits = \"a\"\n[limits]\ntasks = 2\n"),
        ("c", "inherits = \"b\"\ndescription = \"c\"\n"),
    ]);
    let set = dir.load().unwrap();
    let c = set.profile("c").unwrap();
    assert_eq!(
        (c.limits().tasks, c.limits().open_files),
        (Some(2), Some(7))
    );
}

#[test]
fn a_non_allow_mode_drops_the_inherited_allow_list() {
    let dir = PolicyDir::new(&[(
        "offline",
        "inherits = \"networked\"\n[network]\nmode = \"off\"\n",
    )]);
    let set = dir.load_over_shipped().unwrap();
    let offline = set.profile("offline").unwrap();
    assert_eq!(offline.network().mode(), NetworkMode::Off);
    assert!(offline.network().allow().is_empty());
}

#[test]
fn cycles_are_refused_once() {
    let (dir, errors) = errors_of(&[("a", "inherits = \"b\"\n"), ("b", "\ninherits = \"a\"\n")]);
    assert_eq!(
        errors,
        vec![format!(
            "{}:2: bad value for `inherits`: inheritance cycle: a → b → a",
            dir.file("b")
        )]
    );
    let (dir, errors) = errors_of(&[
        ("x", "inherits = \"y\"\n"),
        ("y", "inherits = \"z\"\n"),
        ("z", "inherits = \"y\"\n"),
    ]);
    assert_eq!(
        errors,
        vec![format!(
            "{}:1: bad value for `inherits`: inheritance cycle: y → z → y",
            dir.file("z")
        )]
    );
}

#[test]
fn inheriting_yourself_needs_an_earlier_definition() {
    let (dir, errors) = errors_of(&[("a", "inherits = \"a\"\n")]);
    assert_eq!(
        errors,
        vec![format!(
            "{}:1: bad value for `inherits`: `a` is this profile's own name, which means the definition it replaces, but no earlier policy directory defines `a`",
            dir.file("a")
        )]
    );
}

#[test]
fn missing_parent_names_known_profiles() {
    let (dir, errors) = errors_of(&[("a", "description = \"x\"\ninherits = \"workspace-writ\"\n")]);
    assert_eq!(
        errors,
        vec![format!(
            "{}:2: bad value for `inherits`: no profile `workspace-writ` (known: a)",
            dir.file("a")
        )]
    );
}

#[test]
fn a_child_that_breaks_a_merged_rule_is_told_in_its_own_file() {
    // workspace-write protects paths; turning off the mount namespace breaks that.
    let dir = PolicyDir::new(&[(
        "loose",
        "inherits = \"workspace-write\"\n\n[namespaces]\nmount = false\n",
    )]);
    let err = dir.load_over_shipped().unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}:4: bad value for `namespaces.mount`: protected paths are read-only bind mounts: they need namespaces.user = true and namespaces.mount = true",
            dir.file("loose")
        )
    );
}

#[test]
fn backend_settings_merge_key_by_key_and_resolve_with_the_command() {
    let dir = PolicyDir::new(&[
        (
            "far",
            "[filesystem]\nread = [\"${workspace}\"]\n[backend.remote]\nendpoint = \"exec.example:443\"\ntoken_file = \"${talaria_home}/remote.token\"\nwake = true\n",
        ),
        (
            "near",
            "inherits = \"far\"\nbackends = [\"remote\", \"landlock\"]\n[backend.remote]\nconfinement = \"best-effort\"\nwake = false\n",
        ),
        // A required key may come from the parent, but must come from somewhere.
        ("bare", "backends = [\"remote\"]\n"),
    ]);
    let errors = dir.load().unwrap_err().to_string();
    assert_eq!(
        errors,
        format!(
            "{}:1: bad value for `backends`: the remote backend needs `backend.remote.endpoint`",
            dir.file("bare")
        )
    );
    std::fs::remove_file(dir.path().join("bare.toml")).unwrap();
    let set = dir.load().unwrap();
    let near = set.profile("near").unwrap();
    assert_eq!(near.backends(), ["remote", "landlock"]);
    assert_eq!(
        near.to_json()["backend"],
        serde_json::json!({"remote": {
            "confinement": "best-effort",
            "endpoint": "exec.example:443",
            "token_file": "${talaria_home}/remote.token",
            "wake": false,
        }})
    );
    let layout = Layout::new();
    let resolved = near.resolve(&layout.ctx()).unwrap();
    let remote = resolved.settings_of("remote");
    assert_eq!(remote.text("endpoint"), Some("exec.example:443"));
    assert_eq!(remote.text("confinement"), Some("best-effort"));
    assert_eq!(remote.flag("wake"), Some(false));
    assert_eq!(
        remote.path("token_file"),
        Some(layout.talaria_home.join("remote.token").as_path())
    );
    // Asking for a key with another type, or one that is not set, gives nothing.
    assert_eq!(remote.path("endpoint"), None);
    assert_eq!(resolved.settings_of("landlock").iter().count(), 0);
}
