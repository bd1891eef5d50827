//! The one integration-test binary: drives the real `talaria-oci-helper` over its protocol
//! (containers need a single-threaded process, which a test harness is not), with a busybox
//! root filesystem built in a temporary directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod suite;
