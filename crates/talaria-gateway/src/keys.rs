//! API keys for the HTTP API: where they come from, how a presented key is checked, and the
//! id a key is known by in the database and the logs.
//!
//! A key itself is held only as its SHA-256 digest from the moment it is read; it is never
//! logged, stored or echoed. Presented keys are hashed and compared with every configured
//! digest in constant time, so neither the position of a mismatch nor which key matched leaks
//! through timing.
//!
//! A key may be **trusted**: the owner's own key (`trusted KEY` on its line, or the key
//! `talaria serve` generates for its owner). A trusted key's turns run as the owner surface —
//! the profile as written, memory and skill writes direct — while every other key's turns
//! run narrowed and their writes wait for the owner's approval. Keys never contain whitespace,
//! so the word before a key cannot be part of it.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Shortest key accepted: 32 characters, as long as a 128-bit random value in base64 (and
/// more than any password a person would type).
pub const MIN_KEY_LEN: usize = 32;

/// The credential file systemd passes with `LoadCredential=gateway-key:…`.
pub const CREDENTIAL_NAME: &str = "gateway-key";

/// The environment variable that may carry a key (tests, containers without credentials).
pub const KEY_ENV: &str = "TALARIA_GATEWAY_KEY";

/// Why the configured keys are unusable; the gateway refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "no API key configured: put one or more keys (one per line, at least {MIN_KEY_LEN} characters) in the credential {CREDENTIAL_NAME:?} ($CREDENTIALS_DIRECTORY/{CREDENTIAL_NAME}) or in ${KEY_ENV}"
    )]
    Missing,
    #[error(
        "the API key on line {line} of {source_name} is {len} characters long; keys must have at least {MIN_KEY_LEN}"
    )]
    TooShort {
        source_name: String,
        line: usize,
        len: usize,
    },
    #[error("cannot read API keys from {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot write a new API key to {}: {error}", path.display())]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("no randomness for a new API key: {0}")]
    Random(String),
}

/// The keys `talaria serve` uses: [`ApiKeys::from_environment`] when it finds any (then no
/// file), else the key in `<state_dir>/api-key`, generated there once (24 random bytes in hex
/// after `tal-`, mode 0600) when the file does not exist yet; that key is the owner's and
/// trusted. Returns the file when a key came from it, so the caller can say where it is.
///
/// # Errors
/// A bad key in the environment, an unreadable or unwritable key file, no randomness.
pub fn environment_or_generated(state_dir: &Path) -> Result<(ApiKeys, Option<PathBuf>), KeyError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    match ApiKeys::from_environment() {
        Ok(keys) => return Ok((keys, None)),
        Err(KeyError::Missing) => {}
        Err(e) => return Err(e),
    }
    let path = state_dir.join("api-key");
    let key = match std::fs::read_to_string(&path) {
        Ok(key) => key.trim().to_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0_u8; 24];
            getrandom::fill(&mut bytes).map_err(|e| KeyError::Random(e.to_string()))?;
            let key: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            let key = format!("tal-{key}");
            let write = |error| KeyError::Write {
                path: path.clone(),
                error,
            };
            std::fs::create_dir_all(state_dir).map_err(write)?;
            // Created 0600, never readable by others even for an instant.
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .and_then(|mut file| file.write_all(format!("{key}\n").as_bytes()))
                .map_err(write)?;
            key
        }
        Err(error) => {
            return Err(KeyError::Read {
                path: path.clone(),
                error,
            });
        }
    };
    // The key serve made for its owner is the owner's own: trusted.
    let keys = ApiKeys::parse(&key, &path.display().to_string())?.all_trusted();
    Ok((keys, Some(path)))
}

/// The id of an API key: the first 16 bytes of its SHA-256 digest, in hex. Safe to store and
/// log; it cannot be turned back into the key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyId(String);

impl KeyId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The marker before a trusted key on its line.
pub const TRUSTED_MARKER: &str = "trusted";

/// One configured key.
#[derive(Clone, Copy)]
struct ConfiguredKey {
    digest: [u8; 32],
    /// The owner's own key: its turns are the owner surface.
    trusted: bool,
}

/// The keys that may use the HTTP API, as digests.
#[derive(Clone)]
pub struct ApiKeys {
    keys: Vec<ConfiguredKey>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let trusted = self.keys.iter().filter(|k| k.trusted).count();
        write!(
            f,
            "ApiKeys({} keys, {trusted} trusted, redacted)",
            self.keys.len()
        )
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

impl ApiKeys {
    /// Keys from `text`, one per line; blank lines and lines starting with `#` are skipped.
    /// `source_name` names where the text came from in errors.
    ///
    /// # Errors
    /// A key shorter than [`MIN_KEY_LEN`], or no key at all.
    pub fn parse(text: &str, source_name: &str) -> Result<Self, KeyError> {
        let mut keys = Self { keys: Vec::new() };
        keys.add_lines(text, source_name)?;
        if keys.keys.is_empty() {
            return Err(KeyError::Missing);
        }
        Ok(keys)
    }

    fn add_lines(&mut self, text: &str, source_name: &str) -> Result<(), KeyError> {
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, trusted) = match line.split_once(char::is_whitespace) {
                Some((TRUSTED_MARKER, key)) => (key.trim(), true),
                _ => (line, false),
            };
            let len = key.chars().count();
            if len < MIN_KEY_LEN {
                return Err(KeyError::TooShort {
                    source_name: source_name.to_owned(),
                    line: index + 1,
                    len,
                });
            }
            self.keys.push(ConfiguredKey {
                digest: digest(key),
                trusted,
            });
        }
        Ok(())
    }

    /// Keys from the service manager's credential `gateway-key` (`$CREDENTIALS_DIRECTORY`)
    /// and from `$TALARIA_GATEWAY_KEY`; both may be set and every key found is accepted.
    ///
    /// # Errors
    /// An unreadable credential file, a key that is too short, or no key at all.
    pub fn from_environment() -> Result<Self, KeyError> {
        let credentials = std::env::var_os("CREDENTIALS_DIRECTORY")
            .filter(|dir| !dir.is_empty())
            .map(|dir| Path::new(&dir).join(CREDENTIAL_NAME));
        let env = std::env::var(KEY_ENV).ok();
        Self::from_sources(credentials.as_deref(), env.as_deref())
    }

    /// Keys from a credential file (if it exists) and an environment value (if set).
    ///
    /// # Errors
    /// As [`Self::from_environment`].
    pub fn from_sources(credential: Option<&Path>, env: Option<&str>) -> Result<Self, KeyError> {
        let mut keys = Self { keys: Vec::new() };
        if let Some(path) = credential {
            match std::fs::read_to_string(path) {
                Ok(text) => keys.add_lines(&text, &path.display().to_string())?,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => {
                    return Err(KeyError::Read {
                        path: path.to_owned(),
                        error,
                    });
                }
            }
        }
        if let Some(value) = env {
            keys.add_lines(value, &format!("${KEY_ENV}"))?;
        }
        if keys.keys.is_empty() {
            return Err(KeyError::Missing);
        }
        Ok(keys)
    }

    /// The id of the configured key equal to `presented`, if any. Every configured key is
    /// compared, in constant time.
    pub fn verify(&self, presented: &str) -> Option<KeyId> {
        let presented = digest(presented);
        let mut found: Option<[u8; 32]> = None;
        for candidate in &self.keys {
            if bool::from(candidate.digest.ct_eq(&presented)) {
                found = Some(candidate.digest);
            }
        }
        found.map(|d| KeyId(hex(&d[..16])))
    }

    /// Whether the key with this id is trusted (the owner's own). An id no configured key has
    /// (a request accepted under a key since removed) is not.
    pub fn is_trusted(&self, id: &str) -> bool {
        self.keys
            .iter()
            .any(|key| key.trusted && hex(&key.digest[..16]) == id)
    }

    /// Every key trusted: for the key `talaria serve` generates for its owner.
    #[must_use]
    pub fn all_trusted(mut self) -> Self {
        for key in &mut self.keys {
            key.trusted = true;
        }
        self
    }

    /// How many keys are configured.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn keys_verify_and_ids_do_not_reveal_them() {
        let keys = ApiKeys::parse(&format!("# comment\n\n{GOOD}\n{GOOD}-second\n"), "t").unwrap();
        assert_eq!(keys.len(), 2);
        let id = keys.verify(GOOD).unwrap();
        assert_eq!(id.as_str().len(), 32);
        assert!(!id.as_str().contains("0123456789abcdef0123"));
        assert_ne!(keys.verify(&format!("{GOOD}-second")), Some(id));
        assert_eq!(keys.verify("0123456789abcdef0123456789abcdeX"), None);
        assert_eq!(keys.verify(""), None);
        assert!(!format!("{keys:?}").contains(GOOD));
    }

    #[test]
    fn short_or_missing_keys_refuse() {
        let err = ApiKeys::parse(&format!("{GOOD}\nshort\n"), "the file").unwrap_err();
        assert_eq!(
            err.to_string(),
            "the API key on line 2 of the file is 5 characters long; keys must have at least 32"
        );
        assert!(!err.to_string().contains("short\n"));
        assert!(matches!(
            ApiKeys::parse("\n# nothing\n", "t"),
            Err(KeyError::Missing)
        ));
        assert!(matches!(
            ApiKeys::from_sources(Some(Path::new("/nonexistent/gateway-key")), None),
            Err(KeyError::Missing)
        ));
    }

    #[test]
    fn a_key_marked_trusted_is_the_owners_and_the_others_are_not() {
        let other = "abcdefghijklmnopqrstuvwxyz0123456789";
        let keys = ApiKeys::parse(&format!("trusted {GOOD}\n{other}\n"), "t").unwrap();
        let owner = keys.verify(GOOD).unwrap();
        let guest = keys.verify(other).unwrap();
        assert!(keys.is_trusted(owner.as_str()));
        assert!(!keys.is_trusted(guest.as_str()));
        assert!(!keys.is_trusted("not-a-key-id"));
        // The marker is not part of the key, and is no key by itself.
        assert_eq!(keys.verify(&format!("trusted {GOOD}")), None);
        assert!(matches!(
            ApiKeys::parse("trusted short", "t"),
            Err(KeyError::TooShort { .. })
        ));
        let all = ApiKeys::parse(other, "t").unwrap().all_trusted();
        assert!(all.is_trusted(guest.as_str()));
        assert!(format!("{keys:?}").contains("1 trusted"));
    }

    #[test]
    fn credential_file_and_environment_both_count() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(CREDENTIAL_NAME);
        std::fs::write(&file, format!("{GOOD}\n")).unwrap();
        let other = "abcdefghijklmnopqrstuvwxyz0123456789";
        let keys = ApiKeys::from_sources(Some(&file), Some(other)).unwrap();
        assert!(keys.verify(GOOD).is_some());
        assert!(keys.verify(other).is_some());
    }
}
