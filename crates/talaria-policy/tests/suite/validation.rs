//! Every validation error names the file, the line and the dotted key.

use super::support::{PolicyDir, errors_of};

/// Load a single profile `p` and return its one error message.
fn one_error(text: &str) -> (String, String) {
    let (dir, errors) = errors_of(&[("p", text)]);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    (dir.file("p"), errors.into_iter().next().unwrap())
}

#[test]
fn unknown_key_with_hint() {
    let (file, err) = one_error("description = \"x\"\n[filesystem]\nraed = [\"/usr\"]\n");
    assert_eq!(
        err,
        format!("{file}:3: unknown key `filesystem.raed` (did you mean `filesystem.read`?)")
    );
    // Dotted keys are located the same way.
    let (file, err) = one_error("description = \"x\"\nfilesystem.raed = [\"/usr\"]\n");
    assert_eq!(
        err,
        format!("{file}:2: unknown key `filesystem.raed` (did you mean `filesystem.read`?)")
    );
    let (file, err) = one_error("[sandbox]\nx = 1\n");
    assert!(
        err.starts_with(&format!("{file}:1: unknown key `sandbox` (known here: inherits, description, backends, filesystem,")),
        "{err}"
    );
}

#[test]
fn wrong_type() {
    let (file, err) = one_error("[limits]\ntasks = \"many\"\n");
    assert_eq!(
        err,
        format!("{file}:2: bad value for `limits.tasks`: expected an integer, found string")
    );
    let (file, err) = one_error("[namespaces]\nuser = \"yes\"\n");
    assert_eq!(
        err,
        format!("{file}:2: bad value for `namespaces.user`: expected true or false, found string")
    );
    let (file, err) = one_error("[filesystem]\nread = \"/usr\"\n");
    assert_eq!(
        err,
        format!(
            "{file}:2: bad value for `filesystem.read`: expected a list of strings, found string"
        )
    );
}

#[test]
fn unknown_variable_names_the_element_line() {
    let (file, err) = one_error("[filesystem]\nread = [\n  \"/usr\",\n  \"${workspce}/src\",\n]\n");
    assert_eq!(
        err,
        format!(
            "{file}:4: bad value for `filesystem.read`: unknown variable ${{workspce}} in \"${{workspce}}/src\" (known: ${{workspace}}, ${{home}}, ${{tmp}}, ${{talaria_home}})"
        )
    );
}

#[test]
fn relative_and_dotted_paths() {
    let (file, err) = one_error("[filesystem]\nwrite = [\"build\"]\n");
    assert_eq!(
        err,
        format!(
            "{file}:2: bad value for `filesystem.write`: \"build\" is not an absolute path (start it with `/` or a variable such as ${{workspace}})"
        )
    );
    let (_, err) = one_error("[filesystem]\nwrite = [\"${workspace}/../x\"]\n");
    assert!(err.contains("contains `..`"), "{err}");
}

#[test]
fn bad_sizes_and_durations() {
    let (file, err) = one_error("[limits]\nmemory = \"2G\"\n");
    assert_eq!(
        err,
        format!(
            "{file}:2: bad value for `limits.memory`: \"2G\" is not a size (a whole number and one of B, KiB, MiB, GiB, TiB, kB, MB, GB, TB, e.g. \"512MiB\")"
        )
    );
    let (file, err) = one_error("[limits]\n\nwall_time = \"10 minutes\"\n");
    assert_eq!(
        err,
        format!(
            "{file}:3: bad value for `limits.wall_time`: \"10 minutes\" is not a duration (whole numbers with units h, m, s, e.g. \"10m\", \"30s\", \"1h30m\")"
        )
    );
    let (_, err) = one_error("[limits]\noutput = \"0MiB\"\n");
    assert!(
        err.ends_with("`limits.output`: must be greater than 0"),
        "{err}"
    );
}

#[test]
fn allow_list_needs_mode_allow() {
    let (file, err) = one_error("[network]\nallow = [\"api.github.com:443\"]\n");
    assert_eq!(
        err,
        format!(
            "{file}:2: bad value for `network.allow`: an allow list needs network.mode = \"allow\" (the mode is \"off\")"
        )
    );
    let (file, err) = one_error("[network]\nmode = \"allow\"\n");
    assert!(
        err.starts_with(&format!(
            "{file}:2: bad value for `network.mode`: mode \"allow\" needs a non-empty"
        )),
        "{err}"
    );
}

#[test]
fn bad_host_port() {
    let (file, err) =
        one_error("[network]\nmode = \"allow\"\nallow = [\n  \"api.github.com\",\n]\n");
    assert_eq!(
        err,
        format!(
            "{file}:4: bad value for `network.allow`: \"api.github.com\" is not host:port (missing `:port`)"
        )
    );
    let (_, err) = one_error("[network]\nmode = \"allow\"\nallow = [\"x.org:99999\"]\n");
    assert!(
        err.contains("the port must be a number from 1 to 65535"),
        "{err}"
    );
}

#[test]
fn unknown_backend() {
    let (file, err) = one_error("description = \"x\"\nbackends = [\"landlock\", \"docker\"]\n");
    assert_eq!(
        err,
        format!(
            "{file}:2: bad value for `backends`: unknown backend \"docker\" (known: landlock, oci, remote)"
        )
    );
    let (file, err) = one_error("backends = [\"oci\"]\n");
    assert_eq!(
        err,
        format!("{file}:1: bad value for `backends`: the oci backend needs `backend.oci.rootfs`")
    );
    let (_, err) = one_error("backends = [\"oci\", \"oci\"]\n[backend.oci]\nrootfs = \"/r\"\n");
    assert!(err.ends_with("\"oci\" is listed twice"), "{err}");
}

#[test]
fn backend_settings_are_checked_against_their_backend() {
    // A key the backend does not declare, near a known one and far from every one.
    let (file, err) = one_error("[backend.oci]\nrootfs = \"/r\"\nrootf = \"/r\"\n");
    assert_eq!(
        err,
        format!("{file}:3: unknown key `backend.oci.rootf` (did you mean `backend.oci.rootfs`?)")
    );
    let (file, err) =
        one_error("[backend.remote]\nendpoint = \"e\"\ncontainer_image = \"alpine\"\n");
    assert_eq!(
        err,
        format!(
            "{file}:3: unknown key `backend.remote.container_image` (known here: endpoint, token_file, wake, confinement)"
        )
    );
    let (file, err) = one_error("[backend.landlock]\nstrict = true\n");
    assert_eq!(
        err,
        format!(
            "{file}:2: unknown key `backend.landlock.strict` (the landlock backend has no settings)"
        )
    );
    // A table for a backend nobody registered.
    let (file, err) = one_error("[backend.docker]\nimage = \"alpine\"\n");
    assert_eq!(
        err,
        format!(
            "{file}:1: unknown key `backend.docker` (no backend \"docker\"; known: landlock, oci, remote)"
        )
    );
    // Every kind of value is typed.
    let (_, errors) = errors_of(&[(
        "p",
        "[backend.remote]\nendpoint = 7\ntoken_file = \"relative/key\"\nwake = \"yes\"\nconfinement = \"sometimes\"\n",
    )]);
    assert_eq!(errors.len(), 4, "{errors:#?}");
    assert!(
        errors[0].ends_with(
            ":2: bad value for `backend.remote.endpoint`: expected a string, found integer"
        ),
        "{}",
        errors[0]
    );
    assert!(
        errors[1].contains(":3: bad value for `backend.remote.token_file`: "),
        "{}",
        errors[1]
    );
    assert!(
        errors[2].ends_with(
            ":4: bad value for `backend.remote.wake`: expected true or false, found string"
        ),
        "{}",
        errors[2]
    );
    assert!(
        errors[3].ends_with(
            ":5: bad value for `backend.remote.confinement`: \"sometimes\" is not one of \"required\", \"best-effort\""
        ),
        "{}",
        errors[3]
    );
    let (file, err) = one_error("[backend]\noci = \"/r\"\n");
    assert_eq!(
        err,
        format!("{file}:2: bad value for `backend.oci`: expected a table, found string")
    );
}

#[test]
fn an_old_oci_table_points_to_backend_oci() {
    let (file, err) =
        one_error("description = \"old\"\nbackends = [\"oci\"]\n[oci]\nrootfs = \"/var/lib/r\"\n");
    assert_eq!(
        err,
        format!(
            "{file}:3: unknown key `oci` (backend settings moved: rename the `[oci]` table to `[backend.oci]` (its keys are unchanged))"
        )
    );
}

#[test]
fn invalid_regex() {
    let (file, err) =
        one_error("[[approval]]\npattern = \"rm (\"\ndecision = \"forbidden\"\nreason = \"r\"\n");
    assert_eq!(
        err,
        format!("{file}:2: bad value for `approval[0].pattern`: invalid regex: unclosed group")
    );
}

#[test]
fn missing_rule_keys() {
    let (file, err) = one_error("[[approval]]\npattern = \"x\"\ndecision = \"prompt\"\n");
    assert_eq!(
        err,
        format!(
            "{file}:1: missing key `approval[0].reason`: a prompt or forbidden rule must say why (the user sees it)"
        )
    );
}

#[test]
fn syntax_error_has_line() {
    let (file, err) = one_error("description = \"x\"\n[limits\n");
    assert!(err.starts_with(&format!("{file}:2: ")), "{err}");
}

#[test]
fn protected_paths_need_a_mount_namespace() {
    let (file, err) = one_error("[filesystem]\nprotected = [\"${workspace}/.git/hooks\"]\n");
    assert!(
        err.starts_with(&format!("{file}:2: bad value for `filesystem.protected`: protected paths are read-only bind mounts")),
        "{err}"
    );
}

#[test]
fn check_lists_every_error_in_every_file() {
    let (dir, errors) = errors_of(&[
        (
            "a",
            "backends = [\"docker\"]\n[limits]\nmemory = \"lots\"\ntasks = 0\n[network]\nmode = \"sometimes\"\n",
        ),
        ("b", "inherits = \"missing\"\n"),
    ]);
    let (a, b) = (dir.file("a"), dir.file("b"));
    assert_eq!(
        errors,
        vec![
            format!(
                "{a}:1: bad value for `backends`: unknown backend \"docker\" (known: landlock, oci, remote)"
            ),
            format!(
                "{a}:3: bad value for `limits.memory`: \"lots\" is not a size (a whole number and one of B, KiB, MiB, GiB, TiB, kB, MB, GB, TB, e.g. \"512MiB\")"
            ),
            format!("{a}:4: bad value for `limits.tasks`: must be greater than 0"),
            format!(
                "{a}:6: bad value for `network.mode`: \"sometimes\" is not one of \"off\", \"loopback\", \"allow\""
            ),
            format!("{b}:1: bad value for `inherits`: no profile `missing` (known: a, b)"),
        ]
    );
}

#[test]
fn bad_file_names_and_unreadable_dirs() {
    let dir = PolicyDir::new(&[("Bad Name", "")]);
    let err = dir.load().unwrap_err().to_string();
    assert!(
        err.contains("Bad Name.toml: \"Bad Name\" is not a profile name"),
        "{err}"
    );

    // A missing directory is skipped: /etc/talaria/policies usually does not exist.
    let missing = dir.path().join("nope");
    assert!(
        talaria_policy::PolicySet::load(
            &[talaria_policy::PolicySource::Dir(missing)],
            super::support::BACKENDS
        )
        .is_ok()
    );
    // Non-.toml files (README.md) are ignored.
    let docs = PolicyDir::new(&[]);
    std::fs::write(docs.path().join("README.md"), "# docs").unwrap();
    assert_eq!(docs.load().unwrap().names().count(), 0);
}

#[test]
fn tools_table_is_validated() {
    let (dir, errors) = errors_of(&[("tools", "[tools]\nterminal = \"nope\"\n"), ("a", "")]);
    assert_eq!(
        errors,
        vec![format!(
            "{}:2: bad value for `tools.terminal`: no profile `nope` (known: a)",
            dir.file("tools")
        )]
    );
    let (dir, errors) = errors_of(&[("tools", "[tool]\nterminal = \"a\"\n")]);
    assert_eq!(
        errors,
        vec![format!(
            "{}:1: unknown key `tool` (a tools.toml holds only a [tools] table)",
            dir.file("tools")
        )]
    );
}
