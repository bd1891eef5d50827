//! The Talaria home directory (`$TALARIA_HOME`, default `~/.talaria`) and what lives in it.

use std::path::{Path, PathBuf};

/// Paths inside the Talaria home. Creating it is [`TalariaHome::ensure`]'s job; everything else
/// only computes paths.
#[derive(Debug, Clone)]
pub struct TalariaHome {
    root: PathBuf,
}

impl TalariaHome {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// `$TALARIA_HOME`, else `$HOME/.talaria`.
    ///
    /// # Errors
    /// When neither variable is set, with a message saying which to set.
    pub fn from_env() -> Result<Self, String> {
        talaria_core::home::talaria_home()
            .map(Self::new)
            .ok_or_else(|| {
                "neither TALARIA_HOME nor HOME is set: set TALARIA_HOME to a directory".into()
            })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn config_file(&self) -> PathBuf {
        self.root.join("config.toml")
    }

    /// The configuration file's contents, or defaults when it does not exist.
    ///
    /// # Errors
    /// An unreadable or invalid file, with the key and line at fault.
    pub fn load_config(&self) -> Result<talaria_core::Config, String> {
        let path = self.config_file();
        match std::fs::read_to_string(&path) {
            Ok(text) => talaria_core::Config::from_toml_str(&text, &path.display().to_string())
                .map_err(|e| e.to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(talaria_core::Config::default())
            }
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    pub fn database(&self) -> PathBuf {
        self.root.join("state.db")
    }

    pub fn soul_file(&self) -> PathBuf {
        self.root.join("SOUL.md")
    }

    pub fn memories_dir(&self) -> PathBuf {
        self.root.join("memories")
    }

    pub fn history_file(&self) -> PathBuf {
        self.root.join("chat_history")
    }

    /// Create the home (mode 0700: it holds conversations and possibly keys).
    ///
    /// # Errors
    /// The I/O error, for the caller to report with the path.
    pub fn ensure(&self) -> std::io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(self.memories_dir())
    }
}
