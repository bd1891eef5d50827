//! The OCI backend's per-session helper (`talaria-oci-helper`), built in this package so the
//! escape suite can find it next to its test binary.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(talaria_oci::helper::main_with_args(
        std::env::args_os().skip(1),
    ))
}
