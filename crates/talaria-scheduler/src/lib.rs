//! Talaria's scheduler unit: timed jobs that ask the agent for a turn and deliver the answer.
//!
//! A job is a prompt on a schedule — a five-field cron expression or a fixed interval, in an
//! IANA time zone ([`schedule`]) — with a delivery target: a file, a chat platform through
//! the gateway, or nothing (the answer stays in the run record). Jobs and runs live in the
//! scheduler's own SQLite database ([`store`]); nobody else opens it.
//!
//! When a job is due the scheduler records a run, submits the prompt to `org.talaria.Agent1`
//! with the run id as the turn's idempotency key ([`turn`]), waits for the answer and delivers
//! it ([`delivery`]). A job that came due while the scheduler was down runs once on start,
//! not once per missed slot. A run interrupted by a stop runs again, under the same id, on
//! the next start.
//!
//! It serves `org.talaria.Scheduler1` ([`Scheduler`]); every call is authorized from the
//! bus credentials ([`authz`]). It must never act for a caller on the strength of anything in
//! the payload, and never write a file target with more rights than the job's owner has
//! (see [`delivery`] for the one case where it cannot switch uid).
//!
//! Hosting: [`Scheduler::start`] with a connection builder for any bus, then
//! [`Scheduler::run`] until stopped, then [`Scheduler::shutdown`]; the `talaria-schedulerd`
//! binary ([`daemon`]) does exactly that.

pub mod authz;
pub mod clock;
pub mod daemon;
pub mod delivery;
mod ids;
pub mod schedule;
mod scheduler;
mod service;
pub mod spec;
pub mod store;
pub mod turn;

pub use authz::Polkit;
pub use clock::{Clock, SystemClock};
pub use scheduler::{DATABASE_FILE, Scheduler, SchedulerConfig, SchedulerError};
pub use service::MAX_JOBS_PER_OWNER;
