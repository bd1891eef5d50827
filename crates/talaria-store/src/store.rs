//! The async face of the store: a cloneable handle that runs every query on tokio's blocking
//! pool, so SQLite's disk I/O and lock waits never stall the runtime.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};
use talaria_core::{Message, SessionId, Usage};

use crate::database::{Database, OpenOptions};
use crate::error::StoreError;
use crate::migrations::STATE;
use crate::requests::{SessionKey, TurnRequest};
use crate::scope::{self, SessionHit, SessionScope};
use crate::search::{self, SearchHit};
use crate::sessions::{self, NewSession, SessionRecord, StoredMessage};
use crate::skills::SkillLedger;

/// A handle on one Talaria database. Clones share one connection; calls are serialized on it.
#[derive(Clone, Debug)]
pub struct Store {
    db: Database,
}

impl Store {
    /// Open (creating it and its parent directory if needed) the database at `path` and migrate
    /// it to the latest schema, with default [`OpenOptions`].
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for a file that is not a Talaria database,
    /// [`StoreError::Damaged`] for one that fails SQLite's quick check, [`StoreError::TooNew`]
    /// for one from a newer Talaria (both left untouched), [`StoreError::Locked`] if another
    /// connection holds the lock past the busy timeout, or the underlying open or migration
    /// failure.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        Self::open_with(path, OpenOptions::default()).await
    }

    /// [`Store::open`] with explicit options.
    ///
    /// # Errors
    /// As [`Store::open`].
    pub async fn open_with(path: &Path, options: OpenOptions) -> Result<Store, StoreError> {
        Ok(Self {
            db: Database::open(path, &STATE, options).await?,
        })
    }

    /// A private database that lives as long as this handle and its clones; for tests.
    ///
    /// # Errors
    /// If SQLite cannot allocate it or the schema cannot be created.
    pub async fn open_in_memory() -> Result<Store, StoreError> {
        Ok(Self {
            db: Database::open_in_memory(&STATE).await?,
        })
    }

    /// The database file, or `:memory:`.
    pub fn path(&self) -> &Path {
        self.db.path()
    }

    /// # Errors
    /// [`StoreError::SessionExists`] if the id is taken.
    pub async fn create_session(&self, new: NewSession) -> Result<(), StoreError> {
        self.run(move |conn| sessions::create_session(conn, &new))
            .await
    }

    /// # Errors
    /// On a database failure.
    pub async fn session(&self, id: &SessionId) -> Result<Option<SessionRecord>, StoreError> {
        let id = id.clone();
        self.run(move |conn| sessions::session(conn, &id)).await
    }

    /// Up to `limit` sessions, most recently updated first.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn list_sessions(&self, limit: usize) -> Result<Vec<SessionRecord>, StoreError> {
        self.run(move |conn| sessions::list_sessions(conn, limit))
            .await
    }

    /// The most recently updated session, if any.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn latest_session(&self) -> Result<Option<SessionId>, StoreError> {
        self.run(|conn| sessions::latest_session(conn)).await
    }

    /// Append `messages` in one transaction and return their seqs. Sets the session's title from
    /// the first user message if it has none yet, and bumps `updated_at`.
    ///
    /// # Errors
    /// [`StoreError::NoSuchSession`]; nothing is stored on any error.
    pub async fn append_messages(
        &self,
        id: &SessionId,
        messages: Vec<Message>,
    ) -> Result<Vec<i64>, StoreError> {
        let id = id.clone();
        self.run(move |conn| sessions::append_messages(conn, &id, &messages))
            .await
    }

    /// The session's messages in seq order.
    ///
    /// # Errors
    /// [`StoreError::NoSuchSession`].
    pub async fn messages(&self, id: &SessionId) -> Result<Vec<StoredMessage>, StoreError> {
        let id = id.clone();
        self.run(move |conn| sessions::messages(conn, &id)).await
    }

    /// Delete the messages with `seq` or later (for /undo and /retry); returns how many went.
    /// The search index follows.
    ///
    /// # Errors
    /// [`StoreError::NoSuchSession`].
    pub async fn truncate_from(&self, id: &SessionId, seq: i64) -> Result<usize, StoreError> {
        let id = id.clone();
        self.run(move |conn| sessions::truncate_from(conn, &id, seq))
            .await
    }

    /// # Errors
    /// [`StoreError::NoSuchSession`].
    pub async fn set_model(&self, id: &SessionId, model: &str) -> Result<(), StoreError> {
        let (id, model) = (id.clone(), model.to_owned());
        self.run(move |conn| sessions::set_model(conn, &id, &model))
            .await
    }

    /// Record the usage one model call reported.
    ///
    /// # Errors
    /// [`StoreError::NoSuchSession`].
    pub async fn record_usage(
        &self,
        id: &SessionId,
        model: &str,
        usage: Usage,
    ) -> Result<(), StoreError> {
        let (id, model) = (id.clone(), model.to_owned());
        self.run(move |conn| sessions::record_usage(conn, &id, &model, &usage))
            .await
    }

    /// Record one model call with its provider, task and cost.
    ///
    /// # Errors
    /// [`StoreError::NoSuchSession`].
    pub async fn record_model_call(
        &self,
        id: &SessionId,
        call: crate::ModelCall,
    ) -> Result<(), StoreError> {
        let id = id.clone();
        self.run(move |conn| crate::usage::record(conn, &id, &call))
            .await
    }

    /// Recorded usage grouped by session, day, provider, model and task.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn usage_lines(
        &self,
        filter: crate::UsageFilter,
    ) -> Result<Vec<crate::UsageLine>, StoreError> {
        self.run(move |conn| crate::usage::lines(conn, &filter))
            .await
    }

    /// Remember the provider chosen for the session (`None`: the configured one).
    ///
    /// # Errors
    /// [`StoreError::NoSuchSession`].
    pub async fn set_provider(
        &self,
        id: &SessionId,
        provider: Option<&str>,
    ) -> Result<(), StoreError> {
        let (id, provider) = (id.clone(), provider.map(str::to_owned));
        self.run(move |conn| sessions::set_provider(conn, &id, provider.as_deref()))
            .await
    }

    /// Messages matching every word of `query` (in text or tool names), best first. Any text is
    /// a valid query; one with no words finds nothing.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn search(&self, query: &str, limit: usize) -> Result<Vec<SearchHit>, StoreError> {
        let query = query.to_owned();
        self.run(move |conn| search::search(conn, &query, limit))
            .await
    }

    /// Delete a session with its messages, usage and index entries; `false` if there was none.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn delete_session(&self, id: &SessionId) -> Result<bool, StoreError> {
        let id = id.clone();
        self.run(move |conn| sessions::delete_session(conn, &id))
            .await
    }

    /// SQLite's integrity, foreign-key and full-text-index checks; an empty list means healthy.
    ///
    /// # Errors
    /// If the checks themselves cannot run.
    pub async fn integrity_check(&self) -> Result<Vec<String>, StoreError> {
        self.run(|conn| sessions::integrity_check(conn)).await
    }

    /// Discovery: sessions in `scope` whose messages match `query`, one hit per session (its
    /// best message), best first; `exclude` (the asking session) is left out.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn search_sessions(
        &self,
        query: &str,
        scope: SessionScope,
        exclude: Option<SessionId>,
        limit: usize,
    ) -> Result<Vec<SessionHit>, StoreError> {
        let query = query.to_owned();
        self.run(move |conn| scope::discover(conn, &query, &scope, exclude.as_ref(), limit))
            .await
    }

    /// Browse: the sessions in `scope`, most recently updated first.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn recent_sessions(
        &self,
        scope: SessionScope,
        exclude: Option<SessionId>,
        limit: usize,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        self.run(move |conn| scope::recent(conn, &scope, exclude.as_ref(), limit))
            .await
    }

    /// Scroll: the messages around `seq` of session `id`, or `None` when the session is
    /// unknown or outside `scope` (indistinguishable on purpose).
    ///
    /// # Errors
    /// On a database failure.
    pub async fn message_window(
        &self,
        scope: SessionScope,
        id: &SessionId,
        seq: i64,
        before: usize,
        after: usize,
    ) -> Result<Option<Vec<StoredMessage>>, StoreError> {
        let id = id.clone();
        self.run(move |conn| scope::window(conn, &scope, &id, seq, before, after))
            .await
    }

    /// The key a bus caller gave session `id`, if any: who the session talks to.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn key_of_session(&self, id: &SessionId) -> Result<Option<SessionKey>, StoreError> {
        let id = id.clone();
        self.run(move |conn| crate::requests::key_of_session(conn, &id))
            .await
    }

    /// Name a session for a caller: `key` now means `session_id`, owned by `owner_uid`.
    ///
    /// # Errors
    /// [`StoreError::SessionExists`] when the key is taken.
    pub async fn bind_session_key(&self, key: SessionKey) -> Result<(), StoreError> {
        self.run(move |conn| crate::requests::bind_session_key(conn, &key))
            .await
    }

    /// Narrows the surface of the session named `key` (never widens); the surface in force,
    /// or `None` for an unknown key.
    ///
    /// # Errors
    /// A database error.
    pub async fn narrow_session_surface(
        &self,
        key: &str,
        surface: talaria_core::Surface,
    ) -> Result<Option<talaria_core::Surface>, StoreError> {
        let key = key.to_owned();
        self.run(move |conn| crate::requests::narrow_session_surface(conn, &key, surface))
            .await
    }

    /// What a session key names, if anything.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn session_key(&self, key: &str) -> Result<Option<SessionKey>, StoreError> {
        let key = key.to_owned();
        self.run(move |conn| crate::requests::session_key(conn, &key))
            .await
    }

    /// Record a turn request as running and store its user message, in one transaction.
    /// Returns the message's seq.
    ///
    /// # Errors
    /// A request id already used, an unknown session, or a database failure.
    pub async fn start_request(&self, request: TurnRequest) -> Result<i64, StoreError> {
        self.run(move |conn| crate::requests::start_request(conn, &request))
            .await
    }

    /// A turn request by id.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn turn_request(&self, request_id: &str) -> Result<Option<TurnRequest>, StoreError> {
        let id = request_id.to_owned();
        self.run(move |conn| crate::requests::turn_request(conn, &id))
            .await
    }

    /// Requests still running (after a crash: the ones to resume), oldest first.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn running_requests(&self) -> Result<Vec<TurnRequest>, StoreError> {
        self.run(|conn| crate::requests::running_requests(conn))
            .await
    }

    /// Mark a request done with its answer, or failed with its error.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn finish_request(
        &self,
        request_id: &str,
        outcome: Result<String, String>,
    ) -> Result<(), StoreError> {
        let id = request_id.to_owned();
        self.run(move |conn| {
            crate::requests::finish_request(conn, &id, outcome.as_deref().map_err(String::as_str))
        })
        .await
    }

    /// Run `f` on the skill registry's tables inside one `BEGIN IMMEDIATE` transaction, on the
    /// blocking pool. The transaction commits when `f` returns `Ok` and rolls back otherwise, so
    /// a failed write leaves nothing half-written.
    ///
    /// # Errors
    /// `f`'s error, or a database failure converted into `E`.
    pub async fn skill_ledger<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&SkillLedger<'_>) -> Result<T, E> + Send + 'static,
    {
        let path = self.db.path().to_owned();
        self.db
            .run(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(|e| E::from(StoreError::from(e).at(&path)))?;
                let value = f(&SkillLedger::new(&tx))?;
                tx.commit()
                    .map_err(|e| E::from(StoreError::from(e).at(&path)))?;
                Ok(value)
            })
            .await
    }

    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let path = self.db.path().to_owned();
        self.db
            .run(move |conn| f(conn).map_err(|e| e.at(&path)))
            .await
    }
}
