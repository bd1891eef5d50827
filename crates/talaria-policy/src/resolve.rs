//! Turning a profile into a [`SandboxSpec`] for one command.
//!
//! This is the last point where paths are judged, so it is where symlinks are resolved: the
//! helper's Landlock rules must name real paths, and the Talaria-home check must see through a
//! `workspace` that is a symlink to `~`. Read and write roots that do not exist are dropped
//! (Landlock cannot add a rule for a missing path); protected paths are kept, because the
//! helper protects a missing path by mounting a read-only placeholder over its first missing
//! component, which stops a command from creating, say, `.git/hooks/pre-commit`.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use talaria_sandbox::spec::{FilesystemRules, NetworkRules, ResourceLimits, SandboxSpec};

use std::collections::BTreeMap;

use crate::backend::{BackendSettings, Setting, SettingValue};
use crate::error::PolicyError;
use crate::profile::{NetworkMode, Profile};
use crate::template::Variables;

/// Wall-clock limit of a profile that sets none.
pub const DEFAULT_WALL_TIME: Duration = Duration::from_secs(10 * 60);

/// Output limit of a profile that sets none.
pub const DEFAULT_OUTPUT_BYTES: u64 = 1 << 20;

/// What the resolver needs to know about the command and the machine.
#[derive(Debug, Clone)]
pub struct ResolveContext {
    /// `${workspace}`: must exist.
    pub workspace: PathBuf,
    /// `${home}`: the caller's home directory.
    pub home: PathBuf,
    /// `${tmp}`: the temporary directory the command may use.
    pub tmp: PathBuf,
    /// `${talaria_home}`: never reachable except `skills`, read-only.
    pub talaria_home: PathBuf,
    /// The caller's environment; only names the profile passes reach the command.
    pub caller_env: Vec<(String, String)>,
    /// The command to run.
    pub argv: Vec<String>,
    /// Must exist and be inside a readable root.
    pub cwd: PathBuf,
}

/// A profile resolved for one command: the spec the helper enforces plus what the caller
/// enforces itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// What the helper enforces.
    pub spec: SandboxSpec,
    /// Kill the command after this long (the caller's job; not in the spec).
    pub wall_time: Duration,
    /// Keep at most this much output (the caller's job; not in the spec).
    pub output_bytes: u64,
    /// Backends in the profile's order of preference, by name.
    pub backends: Vec<String>,
    /// The `[backend.NAME]` settings of each listed backend, resolved (empty when the profile
    /// sets none).
    pub settings: BTreeMap<String, BackendSettings>,
}

impl Resolved {
    /// The settings of `backend` (empty for one the profile does not configure).
    pub fn settings_of(&self, backend: &str) -> BackendSettings {
        self.settings.get(backend).cloned().unwrap_or_default()
    }
}

impl Profile {
    /// Resolve this profile for one command.
    ///
    /// # Errors
    /// [`PolicyError::Resolve`] for an empty `argv`, a relative context path, a missing
    /// workspace or cwd, or a cwd outside every readable root;
    /// [`PolicyError::ContainsTalariaHome`] / [`PolicyError::InsideTalariaHome`] when a read or
    /// write root would expose the Talaria home.
    pub fn resolve(&self, ctx: &ResolveContext) -> Result<Resolved, PolicyError> {
        let fail = |message: String| PolicyError::Resolve {
            profile: self.name.clone(),
            message,
        };
        if ctx.argv.is_empty() {
            return Err(fail("no command to run (argv is empty)".to_owned()));
        }
        let (vars, read, write) = self.checked_roots(ctx)?;
        let mut protected: Vec<PathBuf> = Vec::new();
        for template in &self.protected {
            let path = lenient_canonical(&template.substitute(&vars));
            if !protected.contains(&path) {
                protected.push(path);
            }
        }

        let cwd = existing_dir(&ctx.cwd)
            .map_err(|why| fail(format!("cwd {} {why}", ctx.cwd.display())))?;
        if !read.iter().chain(&write).any(|root| cwd.starts_with(root)) {
            return Err(fail(format!(
                "cwd {} is not inside a readable root",
                cwd.display()
            )));
        }

        let mut env: Vec<(String, String)> = Vec::new();
        for name in &self.env_pass {
            if env.iter().any(|(k, _)| k == name) {
                continue;
            }
            // The last definition wins, as with setenv.
            if let Some((_, value)) = ctx.caller_env.iter().rev().find(|(k, _)| k == name) {
                env.push((name.clone(), value.clone()));
            }
        }
        for (name, value) in &self.env_set {
            let value = value.substitute(&vars);
            match env.iter_mut().find(|(k, _)| k == name) {
                Some(slot) => slot.1 = value,
                None => env.push((name.clone(), value)),
            }
        }

        let network = match self.network.mode {
            NetworkMode::Off => NetworkRules::Off,
            NetworkMode::Loopback => NetworkRules::Loopback,
            NetworkMode::Allow => {
                let mut ports: Vec<u16> = self.network.allow.iter().map(|e| e.port()).collect();
                ports.sort_unstable();
                ports.dedup();
                NetworkRules::AllowTcp { ports }
            }
        };

        let limits = &self.limits;
        let spec = SandboxSpec {
            profile: self.name.clone(),
            argv: ctx.argv.clone(),
            cwd,
            env,
            filesystem: FilesystemRules {
                read,
                write,
                protected,
            },
            network,
            namespaces: self.namespaces,
            limits: ResourceLimits {
                cpu_seconds: limits.cpu_time.map(|d| d.as_secs()),
                memory_bytes: limits.memory,
                tasks: limits.tasks,
                file_size_bytes: limits.file_size,
                open_files: limits.open_files,
            },
            builtin: None,
        };
        let settings = self
            .backends
            .iter()
            .map(|backend| {
                let values = self
                    .backend_settings
                    .get(backend)
                    .into_iter()
                    .flatten()
                    .map(|(key, setting)| {
                        let value = match setting {
                            Setting::Path(path) => {
                                SettingValue::Path(lenient_canonical(&path.substitute(&vars)))
                            }
                            Setting::Text(text) => SettingValue::Text(text.clone()),
                            Setting::Flag(flag) => SettingValue::Flag(*flag),
                        };
                        (key.clone(), value)
                    })
                    .collect();
                (backend.clone(), BackendSettings { values })
            })
            .collect();
        Ok(Resolved {
            spec,
            wall_time: limits.wall_time.unwrap_or(DEFAULT_WALL_TIME),
            output_bytes: limits.output.unwrap_or(DEFAULT_OUTPUT_BYTES),
            backends: self.backends.clone(),
            settings,
        })
    }

    /// The checks of resolution that do not depend on the command: absolute context paths, an
    /// existing workspace, and read and write roots that neither contain nor lie inside the
    /// Talaria home. [`Profile::resolve`] runs them for every command and `talaria policy
    /// check` for every profile ([`crate::PolicySet::check_resolution`]): one function, so a
    /// profile `check` passes is one resolution does not refuse for these reasons.
    ///
    /// # Errors
    /// As for [`Profile::resolve`], except the command-specific `argv` and `cwd` checks.
    pub fn check(&self, ctx: &ResolveContext) -> Result<(), PolicyError> {
        self.checked_roots(ctx).map(drop)
    }

    /// The variables and the canonical read and write roots, checked (see [`Profile::check`]).
    fn checked_roots(
        &self,
        ctx: &ResolveContext,
    ) -> Result<(Variables, Vec<PathBuf>, Vec<PathBuf>), PolicyError> {
        let fail = |message: String| PolicyError::Resolve {
            profile: self.name.clone(),
            message,
        };
        for (what, path) in [
            ("workspace", &ctx.workspace),
            ("home", &ctx.home),
            ("tmp", &ctx.tmp),
            ("talaria_home", &ctx.talaria_home),
            ("cwd", &ctx.cwd),
        ] {
            if !path.is_absolute() {
                return Err(fail(format!(
                    "{what} {} is not an absolute path",
                    path.display()
                )));
            }
        }
        let workspace = existing_dir(&ctx.workspace)
            .map_err(|why| fail(format!("workspace {} {why}", ctx.workspace.display())))?;
        let vars = Variables {
            workspace,
            home: lenient_canonical(&ctx.home),
            tmp: lenient_canonical(&ctx.tmp),
            talaria_home: lenient_canonical(&ctx.talaria_home),
        };
        let mut read: Vec<PathBuf> = Vec::new();
        let mut write: Vec<PathBuf> = Vec::new();
        for (templates, out, access) in [
            (&self.read, &mut read, "read"),
            (&self.write, &mut write, "write"),
        ] {
            for template in templates {
                // Missing or unreachable: Landlock could not add a rule for it anyway.
                let Ok(path) = std::fs::canonicalize(template.substitute(&vars)) else {
                    continue;
                };
                self.check_talaria_home(&template.to_string(), &path, access, &vars.talaria_home)?;
                if !out.contains(&path) {
                    out.push(path);
                }
            }
        }
        Ok((vars, read, write))
    }

    /// The names in `env.pass` that look like secrets (`*TOKEN*`, `*KEY*`, `*SECRET*`,
    /// `*PASSWORD*`, …): passing one hands it to every command, and through its output to the
    /// model. Warned about when policies load and by `talaria policy check`.
    #[must_use]
    pub fn secret_looking_env_pass(&self) -> Vec<&str> {
        self.env_pass
            .iter()
            .map(String::as_str)
            .filter(|name| looks_secret(name))
            .collect()
    }

    /// Refuse a root that contains the Talaria home or lies inside it, except a read root
    /// under `skills`. Landlock grants whole trees, so a root above the home cannot be granted
    /// "minus the home": the profile must list narrower roots.
    fn check_talaria_home(
        &self,
        root: &str,
        path: &Path,
        access: &'static str,
        talaria_home: &Path,
    ) -> Result<(), PolicyError> {
        if talaria_home.starts_with(path) {
            return Err(PolicyError::ContainsTalariaHome {
                profile: self.name.clone(),
                root: root.to_owned(),
                path: path.to_path_buf(),
                talaria_home: talaria_home.to_path_buf(),
            });
        }
        let skills = talaria_home.join("skills");
        if path.starts_with(talaria_home) && (access == "write" || !path.starts_with(&skills)) {
            return Err(PolicyError::InsideTalariaHome {
                profile: self.name.clone(),
                access,
                root: root.to_owned(),
                path: path.to_path_buf(),
                talaria_home: talaria_home.to_path_buf(),
            });
        }
        Ok(())
    }
}

/// Whether an environment variable's name looks like it holds a secret.
#[must_use]
pub fn looks_secret(name: &str) -> bool {
    const MARKS: [&str; 9] = [
        "TOKEN",
        "KEY",
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "PASSPHRASE",
        "CREDENTIAL",
        "AUTH",
        "COOKIE",
    ];
    let upper = name.to_ascii_uppercase();
    MARKS.iter().any(|m| upper.contains(m))
}

/// The canonical form of a directory that must exist, or why it does not qualify.
fn existing_dir(path: &Path) -> Result<PathBuf, String> {
    match std::fs::canonicalize(path) {
        Ok(real) if real.is_dir() => Ok(real),
        Ok(_) => Err("is not a directory".to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err("does not exist".to_owned()),
        Err(e) => Err(format!("cannot be resolved: {e}")),
    }
}

/// Canonicalize the longest existing ancestor of an absolute `path` and append the rest, so a
/// path that does not exist yet still has its symlinked parents resolved.
fn lenient_canonical(path: &Path) -> PathBuf {
    let mut missing: Vec<Component<'_>> = Vec::new();
    let mut existing = path;
    loop {
        if let Ok(real) = std::fs::canonicalize(existing) {
            let mut out = real;
            for component in missing.iter().rev() {
                match component {
                    Component::ParentDir => {
                        out.pop();
                    }
                    Component::CurDir => {}
                    other => out.push(other.as_os_str()),
                }
            }
            return out;
        }
        let Some(parent) = existing.parent() else {
            return path.to_path_buf();
        };
        if let Some(last) = existing.components().next_back() {
            missing.push(last);
        }
        existing = parent;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn secret_looking_names() {
        for name in [
            "GITHUB_TOKEN",
            "OPENAI_API_KEY",
            "aws_secret_access_key",
            "DB_PASSWORD",
            "SSH_AUTH_SOCK",
        ] {
            assert!(looks_secret(name), "{name}");
        }
        for name in [
            "PATH",
            "LANG",
            "TERM",
            "TZ",
            "USER",
            "LOGNAME",
            "CARGO_HOME",
        ] {
            assert!(!looks_secret(name), "{name}");
        }
    }

    #[test]
    fn lenient_canonical_resolves_existing_parents() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().canonicalize().unwrap();
        std::fs::create_dir(real.join("a")).unwrap();
        std::os::unix::fs::symlink(real.join("a"), real.join("link")).unwrap();
        assert_eq!(
            lenient_canonical(&real.join("link/missing/x")),
            real.join("a/missing/x")
        );
        assert_eq!(lenient_canonical(&real.join("link")), real.join("a"));
        assert_eq!(
            lenient_canonical(Path::new("/definitely-missing-dir/x")),
            PathBuf::from("/definitely-missing-dir/x")
        );
    }
}
