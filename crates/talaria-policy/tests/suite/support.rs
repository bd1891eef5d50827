//! Helpers: policy directories in temp dirs and a typical home layout to resolve against.

use std::path::{Path, PathBuf};

use talaria_policy::{
    BackendSchema, PolicyErrors, PolicySet, PolicySource, ResolveContext, SettingKind, SettingSpec,
};

/// The backends these tests load policies against, as an executor registers them: the two
/// this build has, and a made-up `remote` with one setting of every kind.
pub static BACKENDS: &[&BackendSchema] = &[&LANDLOCK, &OCI, &REMOTE];

static LANDLOCK: BackendSchema = BackendSchema {
    name: "landlock",
    settings: &[],
};

static OCI: BackendSchema = BackendSchema {
    name: "oci",
    settings: &[SettingSpec {
        key: "rootfs",
        kind: SettingKind::Path,
        required: true,
    }],
};

static REMOTE: BackendSchema = BackendSchema {
    name: "remote",
    settings: &[
        SettingSpec {
            key: "endpoint",
            kind: SettingKind::Text,
            required: true,
        },
        SettingSpec {
            key: "token_file",
            kind: SettingKind::Path,
            required: false,
        },
        SettingSpec {
            key: "wake",
            kind: SettingKind::Flag,
            required: false,
        },
        SettingSpec {
            key: "confinement",
            kind: SettingKind::Choice(&["required", "best-effort"]),
            required: false,
        },
    ],
};

/// The shipped profiles alone.
pub fn shipped() -> PolicySet {
    PolicySet::shipped(BACKENDS).unwrap_or_else(|e| panic!("shipped policies are broken:\n{e}"))
}

/// A temp directory of policy files.
pub struct PolicyDir {
    pub dir: tempfile::TempDir,
}

impl PolicyDir {
    pub fn new(files: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(format!("{name}.toml")), text).unwrap();
        }
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `DIR/NAME.toml` as errors print it.
    pub fn file(&self, name: &str) -> String {
        self.dir
            .path()
            .join(format!("{name}.toml"))
            .display()
            .to_string()
    }

    pub fn source(&self) -> PolicySource {
        PolicySource::Dir(self.dir.path().to_path_buf())
    }

    /// Load this directory alone.
    pub fn load(&self) -> Result<PolicySet, PolicyErrors> {
        PolicySet::load(&[self.source()], BACKENDS)
    }

    /// Load the shipped profiles, then this directory.
    pub fn load_over_shipped(&self) -> Result<PolicySet, PolicyErrors> {
        PolicySet::load(&[PolicySource::Shipped, self.source()], BACKENDS)
    }
}

/// Load one profile file `name` from a fresh directory and return the error messages.
pub fn errors_of(files: &[(&str, &str)]) -> (PolicyDir, Vec<String>) {
    let dir = PolicyDir::new(files);
    let errors = match dir.load() {
        Ok(_) => Vec::new(),
        Err(e) => e.errors().iter().map(ToString::to_string).collect(),
    };
    (dir, errors)
}

/// A typical machine: `/home/u/project` as the workspace, `/home/u/.talaria` as the Talaria
/// home with its database and config, and a scratch directory — all under a temp root.
pub struct Layout {
    pub root: tempfile::TempDir,
    pub home: PathBuf,
    pub workspace: PathBuf,
    pub talaria_home: PathBuf,
    pub tmp: PathBuf,
}

impl Layout {
    pub fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        let base = root.path().canonicalize().unwrap();
        let home = base.join("home/u");
        let workspace = home.join("project");
        let talaria_home = home.join(".talaria");
        let tmp = base.join("scratch");
        for dir in [&workspace, &talaria_home.join("skills/demo"), &tmp] {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(talaria_home.join("state.db"), "db").unwrap();
        std::fs::write(talaria_home.join("config.toml"), "[model]\n").unwrap();
        std::fs::write(talaria_home.join("skills/demo/SKILL.md"), "demo").unwrap();
        std::fs::write(workspace.join("main.rs"), "fn main() {}").unwrap();
        Self {
            root,
            home,
            workspace,
            talaria_home,
            tmp,
        }
    }

    pub fn ctx(&self) -> ResolveContext {
        ResolveContext {
            workspace: self.workspace.clone(),
            home: self.home.clone(),
            tmp: self.tmp.clone(),
            talaria_home: self.talaria_home.clone(),
            caller_env: vec![
                ("PATH".into(), "/usr/bin:/bin".into()),
                ("LANG".into(), "C.UTF-8".into()),
                ("OPENAI_API_KEY".into(), "sk-secret".into()),
                ("HOME".into(), self.home.display().to_string()),
            ],
            argv: vec!["ls".into(), "-l".into()],
            cwd: self.workspace.clone(),
        }
    }
}
