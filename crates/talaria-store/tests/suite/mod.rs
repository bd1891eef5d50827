mod concurrency;
mod conversation;
mod migration;
mod open_errors;
mod search;
mod usage;

use std::path::{Path, PathBuf};

use talaria_core::SessionId;
use talaria_store::{NewSession, Store};

pub fn sid(id: &str) -> SessionId {
    SessionId::parse(id).unwrap()
}

pub fn new_session(id: &str) -> NewSession {
    NewSession {
        id: sid(id),
        model: "test-model".into(),
        source: "cli".into(),
        cwd: "/home/u/project".into(),
    }
}

/// A database file in a fresh temporary directory (kept alive by the returned guard).
pub fn db_path() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    (dir, path)
}

pub async fn open(path: &Path) -> Store {
    Store::open(path).await.unwrap()
}
