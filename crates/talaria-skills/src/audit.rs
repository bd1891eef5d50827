//! The audit log's hash chain.
//!
//! Every row carries `prev_hash` (the previous row's `hash`; 64 zeros for the first row) and
//! `hash`, the lowercase hex SHA-256 of
//!
//! ```text
//! prev_hash (64 ASCII hex characters)
//! "talaria-skill-audit-v1\n"
//! then each of seq, at (decimal ASCII), action, skill, version ("" when none), actor, reason:
//!     u64 big-endian length, the UTF-8 bytes
//! ```
//!
//! Changing, removing, inserting or reordering a row breaks the chain at that row, which
//! [`verify_chain`] reports by seq. The chain cannot stop someone who rewrites every row after
//! the one they changed; the triggers and the file's permissions are what stop that, and a
//! copy of the last hash kept elsewhere would detect it.

use sha2::{Digest, Sha256};
use talaria_store::SkillAuditRecord;

use crate::tree::hex;

/// `prev_hash` of the first row.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

const AUDIT_DOMAIN: &[u8] = b"talaria-skill-audit-v1\n";

/// The hash a row must carry, from its own fields and its `prev_hash`.
pub fn row_hash(row: &SkillAuditRecord) -> String {
    let mut hasher = Sha256::new();
    hasher.update(row.prev_hash.as_bytes());
    hasher.update(AUDIT_DOMAIN);
    let seq = row.seq.to_string();
    let at = row.at.to_string();
    for field in [
        seq.as_str(),
        at.as_str(),
        row.action.as_str(),
        row.skill.as_str(),
        row.version.as_deref().unwrap_or(""),
        row.actor.as_str(),
        row.reason.as_str(),
    ] {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field.as_bytes());
    }
    hex(&hasher.finalize())
}

/// Every break in the chain of `rows` (all rows, in seq order), one line each naming the seq.
pub fn verify_chain(rows: &[SkillAuditRecord]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut prev = GENESIS.to_owned();
    let mut expected_seq = 1;
    for row in rows {
        if row.seq != expected_seq {
            problems.push(format!(
                "audit log: expected entry seq {expected_seq}, found seq {} (entries removed or inserted)",
                row.seq
            ));
        }
        if row.prev_hash != prev {
            problems.push(format!(
                "audit log: entry seq {} does not chain to the entry before it",
                row.seq
            ));
        }
        if row_hash(row) != row.hash {
            problems.push(format!(
                "audit log: entry seq {} ({} {}) was modified: its hash does not match its contents",
                row.seq, row.action, row.skill
            ));
        }
        prev.clone_from(&row.hash);
        expected_seq = row.seq + 1;
    }
    problems
}
