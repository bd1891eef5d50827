//! One integration-test binary for the fuzz harness (see STYLE.md: link times).
#![expect(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod suite;
