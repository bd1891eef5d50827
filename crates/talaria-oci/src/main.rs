//! `talaria-oci-helper --state DIR [--images DIR]`: the per-session OCI container helper. See
//! [`talaria_oci::helper`] and [`talaria_oci::protocol`].

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(talaria_oci::helper::main_with_args(
        std::env::args_os().skip(1),
    ))
}
