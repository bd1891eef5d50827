//! Usage accounting: one row per model call with its provider, model, task, token counts and
//! cost, and the grouped lines `/usage` and `talaria insights` are built from.
//!
//! Costs are computed by the caller from the catalogue's prices when the call is recorded and
//! stored as they were, so a later price change never rewrites history; an unknown price is
//! stored as NULL and reported as unpriced calls, never as zero.

use rusqlite::{Connection, params};
use talaria_core::{SessionId, Usage, UsageTask};

use crate::error::StoreError;
use crate::sessions::{count, now_ms, require_session, sql_int, write};

/// One model call to record.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelCall {
    /// The catalogue provider that answered, when known.
    pub provider: Option<String>,
    /// The model that answered.
    pub model: String,
    pub task: UsageTask,
    pub usage: Usage,
    /// US dollars at the catalogue's prices; `None` when the model has no known price.
    pub cost: Option<f64>,
}

/// Which calls a report covers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageFilter {
    /// Only this session's calls.
    pub session: Option<SessionId>,
    /// Only calls recorded at or after this Unix millisecond.
    pub since_ms: Option<i64>,
}

/// The calls of one session, day, provider, model and task, summed.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageLine {
    pub session: String,
    /// `YYYY-MM-DD` in local time.
    pub day: String,
    pub provider: Option<String>,
    pub model: String,
    /// As stored: `turn`, `compression`, `title`, `review`, `memory_nudge`.
    pub task: String,
    pub calls: u64,
    pub usage: Usage,
    /// The sum of the priced calls' costs; `None` when no call had a price.
    pub cost: Option<f64>,
    /// Calls whose model had no known price (not in `cost`).
    pub unpriced_calls: u64,
}

pub(crate) fn record(
    conn: &mut Connection,
    id: &SessionId,
    call: &ModelCall,
) -> Result<(), StoreError> {
    write(conn, |tx| {
        require_session(tx, id)?;
        tx.execute(
            "INSERT INTO usage
                 (session_id, provider, model, task, prompt_tokens, completion_tokens,
                  cached_tokens, cache_write_tokens, cost, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                id.as_str(),
                call.provider,
                call.model,
                call.task.as_str(),
                sql_int(call.usage.prompt_tokens),
                sql_int(call.usage.completion_tokens),
                sql_int(call.usage.cached_tokens),
                sql_int(call.usage.cache_write_tokens),
                call.cost.filter(|c| c.is_finite()),
                now_ms(),
            ],
        )?;
        Ok(())
    })
}

pub(crate) fn lines(conn: &Connection, filter: &UsageFilter) -> Result<Vec<UsageLine>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT session_id, date(created_at / 1000, 'unixepoch', 'localtime') AS day,
                provider, model, task, count(*),
                sum(prompt_tokens), sum(completion_tokens), sum(cached_tokens),
                sum(cache_write_tokens), sum(cost), count(*) - count(cost)
         FROM usage
         WHERE (?1 IS NULL OR session_id = ?1) AND (?2 IS NULL OR created_at >= ?2)
         GROUP BY session_id, day, provider, model, task
         ORDER BY day, session_id, provider, model, task",
    )?;
    let session = filter.session.as_ref().map(SessionId::as_str);
    let rows = stmt
        .query_map(params![session, filter.since_ms], |row| {
            Ok(UsageLine {
                session: row.get(0)?,
                day: row.get(1)?,
                provider: row.get(2)?,
                model: row.get(3)?,
                task: row.get(4)?,
                calls: count(row.get(5)?),
                usage: Usage {
                    prompt_tokens: count(row.get(6)?),
                    completion_tokens: count(row.get(7)?),
                    cached_tokens: count(row.get(8)?),
                    cache_write_tokens: count(row.get(9)?),
                },
                cost: row.get(10)?,
                unpriced_calls: count(row.get(11)?),
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}
