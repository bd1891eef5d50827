//! Compiles the escape probe a second time, statically linked (`-C target-feature=+crt-static`),
//! into `$OUT_DIR/escape-probe`, and tells the tests where it is (`ESCAPE_PROBE_STATIC`).
//!
//! Why: the OCI backend's container root in the tests is busybox and nothing else, so a program
//! that needs `ld-linux` and `libc.so` cannot start there. Cargo cannot link one binary of a
//! package with different flags (`-static` as a link argument alone produces a PIE without
//! static start-up code that crashes), and a `.cargo/config.toml` would change every crate. The
//! probe uses std alone, so plain `rustc` builds it in well under a second.
//!
//! Never fails the build: a host without static C libraries gets a warning; the local backend's
//! cases then use the dynamically linked `escape-probe`, and the container cases fail saying
//! why.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=probe");
    println!("cargo::rerun-if-changed=build.rs");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("escape-probe");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let target = std::env::var("TARGET").unwrap_or_default();
    let result = Command::new(rustc)
        .args([
            "--edition",
            "2024",
            "--crate-type",
            "bin",
            "--crate-name",
            "escape_probe",
        ])
        .args([
            "-C",
            "target-feature=+crt-static",
            "-C",
            "opt-level=1",
            "-C",
            "debuginfo=0",
        ])
        .args(["--target", &target, "--cap-lints", "allow"])
        .arg("-o")
        .arg(&out)
        .arg("probe/main.rs")
        .output();
    match result {
        Ok(output) if output.status.success() => {
            println!("cargo::rustc-env=ESCAPE_PROBE_STATIC={}", out.display());
        }
        Ok(output) => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let first = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            println!(
                "cargo::warning=cannot link the escape probe statically ({first}); the container cases will fail"
            );
            println!("cargo::rustc-env=ESCAPE_PROBE_STATIC=");
        }
        Err(e) => {
            println!("cargo::warning=cannot run rustc for the static escape probe: {e}");
            println!("cargo::rustc-env=ESCAPE_PROBE_STATIC=");
        }
    }
}
