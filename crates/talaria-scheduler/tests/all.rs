//! One integration-test binary for talaria-scheduler (see STYLE.md: link times).
#![expect(clippy::unwrap_used, reason = "tests")]

mod suite;
