//! One integration-test binary for talaria-scheduler (see STYLE.md: link times).
#![expect(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod suite;
