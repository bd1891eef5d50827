mod chat;
mod config;
mod failures;
mod harness;
mod sessions;
