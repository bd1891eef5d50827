//! One integration-test binary for the end-to-end suite (see STYLE.md: link times).
#![expect(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod suite;
