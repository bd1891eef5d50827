mod chat;
mod config;
mod failures;
mod harness;
mod sandbox;
mod serve;
mod sessions;
mod skills;
