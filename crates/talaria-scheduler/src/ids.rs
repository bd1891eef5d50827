//! Job and run ids: random, so nobody can guess another user's ids. A run id is also the
//! agent's idempotency key for that run's turn, so a guessable one would let another caller
//! claim it first.

use std::io::Read;

/// `prefix` followed by `bytes` random bytes in hex.
///
/// # Errors
/// The kernel's random source cannot be read.
pub(crate) fn random_id(prefix: &str, bytes: usize) -> std::io::Result<String> {
    let mut buffer = vec![0_u8; bytes];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buffer)?;
    let mut id = String::with_capacity(prefix.len() + 2 * bytes);
    id.push_str(prefix);
    for byte in buffer {
        id.push_str(&format!("{byte:02x}"));
    }
    Ok(id)
}

pub(crate) fn job_id() -> std::io::Result<String> {
    random_id("job-", 8)
}

pub(crate) fn run_id() -> std::io::Result<String> {
    random_id("run-", 12)
}
