//! Where a run's answer goes: appended to a file, handed to the gateway, or only kept in the
//! run record.
//!
//! Threat: a job's owner chooses its `file:` target, and the scheduler may run with more
//! rights than the owner (as root on the system bus). A file target must never let an owner
//! write where they could not write themselves. So:
//! - the path must be absolute without `..`, and never inside the scheduler's state directory
//!   (checked when the job is created, see [`crate::spec`]);
//! - when the scheduler runs as root and the owner is not root, the append runs in a child
//!   process with the owner's uid and primary gid (no supplementary groups): the kernel decides
//!   what the owner may write, not this code;
//! - otherwise the scheduler writes with its own rights, which is what the owner has anyway
//!   when owner and scheduler are the same uid. When a *different* non-root uid owns the job
//!   and the scheduler is not root, it cannot switch uid and writes as itself: the state
//!   directory rule is then what protects the scheduler's own files.
//!
//! The final path component is never followed if it is a symlink.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use talaria_bus::{GatewayProxy, VariantDict};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;
use zbus::{Connection, OwnedVariant};

use talaria_bus::client::is_transient;

/// A parsed `deliver_to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Empty: the answer stays in the run record only.
    Keep,
    /// `file:/abs/path`: append a block to this file.
    File(PathBuf),
    /// `platform:target`, handed to `Gateway1.Deliver` as written.
    Gateway(String),
}

/// Why a `deliver_to` is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("file target {0:?} is not an absolute path")]
    NotAbsolute(String),
    #[error("file target {0:?} contains `..`, `.` or an empty component")]
    NotNormal(String),
    #[error("{0:?} is neither file:/abs/path nor platform:target")]
    Malformed(String),
}

impl Target {
    /// # Errors
    /// A file target that is not absolute and normal, or a gateway target without a platform
    /// or a chat.
    pub fn parse(text: &str) -> Result<Self, TargetError> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Self::Keep);
        }
        if let Some(path) = text.strip_prefix("file:") {
            let path = Path::new(path);
            if !path.is_absolute() {
                return Err(TargetError::NotAbsolute(text.to_owned()));
            }
            // Components drops `.` and repeated slashes silently; compare to catch them.
            let normal = path
                .components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
            let rebuilt: PathBuf = path.components().collect();
            if !normal || rebuilt.as_os_str() != path.as_os_str() || path.parent().is_none() {
                return Err(TargetError::NotNormal(text.to_owned()));
            }
            return Ok(Self::File(path.to_owned()));
        }
        match text.split_once(':') {
            Some((platform, chat))
                if !platform.is_empty()
                    && !chat.is_empty()
                    && platform
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
            {
                Ok(Self::Gateway(text.to_owned()))
            }
            _ => Err(TargetError::Malformed(text.to_owned())),
        }
    }
}

/// Why an answer was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("cannot append to {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot append to {path} as uid {uid}: {detail}")]
    AsOwner {
        path: PathBuf,
        uid: u32,
        detail: String,
    },
    #[error("the gateway refused the delivery to {target}: {source}")]
    Gateway { target: String, source: zbus::Error },
    #[error("the gateway was unreachable for {waited:?}: {detail}")]
    GatewayUnreachable { waited: Duration, detail: String },
}

/// One answer to deliver.
#[derive(Debug)]
pub struct Answer<'a> {
    pub job_id: &'a str,
    /// The run that produced it: the gateway's idempotency key, so a run resumed after a stop
    /// that delivers again is delivered once.
    pub run_id: &'a str,
    pub job_name: &'a str,
    pub owner_uid: u32,
    /// When the run happened, as RFC 3339 in the job's time zone.
    pub at: String,
    pub text: &'a str,
}

impl Answer<'_> {
    /// The block appended to a file target.
    pub fn file_block(&self) -> String {
        format!(
            "## {} — {} ({})\n\n{}\n\n",
            self.job_name,
            self.at,
            self.job_id,
            self.text.trim_end()
        )
    }
}

/// Delivers `answer` to `target`; returns the gateway's delivery id for gateway targets.
///
/// # Errors
/// The file cannot be written, or the gateway refuses or stays away longer than `patience`.
pub async fn deliver(
    connection: &Connection,
    target: &Target,
    answer: &Answer<'_>,
    state_dir: &Path,
    patience: Duration,
) -> Result<Option<String>, DeliveryError> {
    match target {
        Target::Keep => Ok(None),
        Target::File(path) => {
            append(path, answer.owner_uid, answer.file_block(), state_dir).await?;
            Ok(None)
        }
        Target::Gateway(target) => to_gateway(connection, target, answer, patience)
            .await
            .map(Some),
    }
}

async fn to_gateway(
    connection: &Connection,
    target: &str,
    answer: &Answer<'_>,
    patience: Duration,
) -> Result<String, DeliveryError> {
    let options = VariantDict::from([
        (
            "job_id".to_owned(),
            OwnedVariant::from(zbus::Str::from(answer.job_id.to_owned())),
        ),
        (
            "idempotency_key".to_owned(),
            OwnedVariant::from(zbus::Str::from(answer.run_id.to_owned())),
        ),
    ]);
    let deadline = Instant::now() + patience;
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(15));
    loop {
        let attempt = async {
            let gateway = GatewayProxy::builder(connection)
                .cache_properties(zbus::proxy::CacheProperties::No)
                .build()
                .await?;
            gateway.deliver(target, answer.text, &options).await
        };
        match attempt.await {
            Ok(id) => return Ok(id),
            Err(error) if is_transient(&error) => {
                tracing::info!(target, %error, "the gateway is unreachable; delivering again after a pause");
                if !backoff.wait(deadline).await {
                    return Err(DeliveryError::GatewayUnreachable {
                        waited: patience,
                        detail: error.to_string(),
                    });
                }
            }
            Err(source) => {
                return Err(DeliveryError::Gateway {
                    target: target.to_owned(),
                    source,
                });
            }
        }
    }
}

/// Appends `block` to `path` with the rights described in the module docs.
async fn append(
    path: &Path,
    owner_uid: u32,
    block: String,
    state_dir: &Path,
) -> Result<(), DeliveryError> {
    let own_uid = talaria_daemon::own_uid();
    if own_uid == 0 && owner_uid != 0 {
        return append_as(path, owner_uid, block).await;
    }
    let path = path.to_owned();
    let state_dir = state_dir.to_owned();
    let result = tokio::task::spawn_blocking({
        let path = path.clone();
        move || append_here(&path, block.as_bytes(), &state_dir)
    })
    .await
    .map_err(std::io::Error::other)
    .and_then(|r| r);
    result.map_err(|source| DeliveryError::File { path, source })
}

fn append_here(path: &Path, block: &[u8], state_dir: &Path) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)?;
        // The spec check saw the path as written; a symlinked directory may still lead into
        // the state directory, whose database this process can write.
        let real_parent = std::fs::canonicalize(parent)?;
        let real_state = std::fs::canonicalize(state_dir).unwrap_or_else(|_| state_dir.to_owned());
        if real_parent.starts_with(&real_state) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "{} leads into the scheduler's state directory",
                    parent.display()
                ),
            ));
        }
    }
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    file.write_all(block)?;
    file.flush()
}

/// Appends through `/bin/sh` running as `uid` (and its primary gid, no supplementary groups),
/// so the kernel checks the owner's rights. The path travels as an argument, never inside the
/// script text.
async fn append_as(path: &Path, uid: u32, block: String) -> Result<(), DeliveryError> {
    let fail = |detail: String| DeliveryError::AsOwner {
        path: path.to_owned(),
        uid,
        detail,
    };
    let gid = primary_gid(uid).unwrap_or(65534);
    let parent = path.parent().unwrap_or(Path::new("/"));
    // `set -C` is not used: appending to an existing file is the point. A symlink as the last
    // component is refused by testing for it first (the owner could swap it in between, but
    // then the owner's own rights apply).
    let script = r#"umask 077
if [ -L "$2" ]; then echo "refusing to follow the symlink $2" >&2; exit 3; fi
mkdir -p -- "$1" && cat >> "$2""#;
    let mut child = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .arg("sh")
        .arg(parent)
        .arg(path)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .current_dir("/")
        .uid(uid)
        .gid(gid)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| fail(format!("cannot start /bin/sh: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(block.as_bytes())
            .await
            .map_err(|e| fail(format!("cannot write the answer: {e}")))?;
    }
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .map_err(|_| fail("the append did not finish within 30 s".into()))?
        .map_err(|e| fail(e.to_string()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(fail(format!(
            "{}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// The primary group of `uid` from the user database.
fn primary_gid(uid: u32) -> Option<u32> {
    let mut buffer = vec![0_u8; 4096];
    // SAFETY: passwd is plain data; getpwuid_r writes into it and `buffer`, both live for the
    // call, and sets `result` to null or to `passwd`.
    unsafe {
        let mut passwd: libc::passwd = std::mem::zeroed();
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(
            uid,
            &mut passwd,
            buffer.as_mut_ptr().cast(),
            buffer.len(),
            &mut result,
        );
        (rc == 0 && !result.is_null()).then_some(passwd.pw_gid)
    }
}

/// Doubling pauses between attempts, within a deadline.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub(crate) fn new(first: Duration, max: Duration) -> Self {
        Self { next: first, max }
    }

    /// Sleeps before the next attempt; `false` when that would pass `deadline`.
    pub(crate) async fn wait(&mut self, deadline: Instant) -> bool {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        let pause = self.next.min(deadline - now);
        self.next = (self.next * 2).min(self.max);
        tokio::time::sleep(pause).await;
        true
    }
}
