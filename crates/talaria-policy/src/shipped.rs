//! The profiles in the repository's `policies/`, compiled in so an installed binary has them
//! without any file on disk. A test keeps this list in step with the directory.

/// How shipped files are named in errors and in `policy list`.
pub(crate) const ORIGIN: &str = "<shipped>";

/// `(name, text)` of each shipped policy file.
pub(crate) const FILES: &[(&str, &str)] = &[
    (
        "networked",
        include_str!("../../../policies/networked.toml"),
    ),
    ("oci", include_str!("../../../policies/oci.toml")),
    (
        "read-only",
        include_str!("../../../policies/read-only.toml"),
    ),
    (
        "workspace-write",
        include_str!("../../../policies/workspace-write.toml"),
    ),
];
