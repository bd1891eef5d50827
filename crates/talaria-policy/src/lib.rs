//! Talaria's sandbox policy: named profiles in TOML, validated when loaded, resolved to the
//! [`SandboxSpec`](talaria_sandbox::spec::SandboxSpec) the helper enforces.
//!
//! # What this crate owns, and what it must never do
//! It decides *what* a tool call may touch: files, network, environment, limits, and whether a
//! command needs approval. It never enforces anything itself (that is `talaria-sandbox`'s
//! helper), never runs commands, and performs no I/O beyond reading policy files and
//! resolving paths (`canonicalize`).
//!
//! # Threat and semantics
//! The model, and anything that can steer it (web pages, files, chat users), is untrusted.
//! A profile must therefore be exactly as wide as written, and a mistake in one must stop the
//! agent rather than widen what it can do:
//! - **Load**: every file of every source is validated; any problem refuses the whole set, and
//!   every problem is reported with file, line and dotted key ([`PolicyErrors`]). Approval rules
//!   carry example commands that must (and must not) match; they are checked at load.
//! - **Layering**: shipped profiles, then `/etc/talaria/policies`, then
//!   `$TALARIA_HOME/policies`; a later file of the same name replaces an earlier one whole
//!   ([`Profile::replaced`] says which). `inherits` merges per key, child over parent; lists
//!   replace, `approval` rules append (child first).
//! - **The Talaria home** (`state.db`, `config.toml`, credentials) is never granted, except
//!   `${talaria_home}/skills` read-only. Landlock grants whole trees and cannot subtract, so a
//!   root that *contains* the home (`/`, `${home}` with the usual `~/.talaria`) is refused,
//!   on the text at load and again on real, symlink-resolved paths at resolve time. This also
//!   keeps `$TALARIA_HOME/policies` out of reach, and `/etc/talaria/policies` is at most
//!   readable: a sandboxed command cannot rewrite the policy that confines it.
//! - **Narrowing**: the surface a request came from ([`Surface`]) can only take rights away
//!   ([`Profile::narrow`]).
//! - **Approval**: [`Profile::decide`] — the first rule whose regex matches the command line
//!   decides; no match allows.
//! - **Backends** are names the executor registers ([`BackendSchema`]), not a list fixed here:
//!   a profile naming an unregistered backend, or a `[backend.NAME]` key its backend does not
//!   declare, refuses the set like any other mistake.
//!
//! The format is documented key by key in `policies/README.md`.

mod backend;
mod endpoint;
mod error;
mod narrow;
mod parse;
mod profile;
mod resolve;
mod set;
mod shipped;
mod template;
mod units;
mod widening;

pub use backend::{
    BackendSchema, BackendSettings, DEFAULT_BACKEND, SettingKind, SettingSpec, SettingValue,
};
pub use endpoint::Endpoint;
pub use error::{PolicyError, PolicyErrors};
pub use narrow::{ALLOWLISTED_USER_LIMITS, WEBHOOK_LIMITS};
pub use profile::{Decision, Limits, Network, NetworkMode, Profile, Surface};
pub use resolve::{DEFAULT_OUTPUT_BYTES, DEFAULT_WALL_TIME, ResolveContext, Resolved};
pub use set::{PolicySet, PolicySource, SYSTEM_POLICY_DIR, ToolMapping};

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::path::Path;

    /// The repository's `policies/` directory.
    fn policies_dir() -> &'static Path {
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies"))
    }

    #[test]
    fn every_policy_file_is_shipped() {
        let mut on_disk: Vec<String> = std::fs::read_dir(policies_dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let shipped: Vec<&str> = crate::shipped::FILES.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            on_disk, shipped,
            "list new files in src/shipped.rs (sorted)"
        );
    }

    #[test]
    fn readme_documents_every_key() {
        let readme = std::fs::read_to_string(policies_dir().join("README.md")).unwrap();
        for key in crate::parse::PROFILE_KEYS {
            let documented = format!("`{}`", key.replace("approval[].", "approval."));
            assert!(
                readme.contains(&documented),
                "policies/README.md lacks {documented}"
            );
        }
        for key in [
            "`tools`",
            "`${workspace}`",
            "`${home}`",
            "`${tmp}`",
            "`${talaria_home}`",
        ] {
            assert!(readme.contains(key), "policies/README.md lacks {key}");
        }
    }
}
