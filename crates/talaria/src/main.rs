//! The `talaria` command. Everything lives in the library; this only runs it.

fn main() -> std::process::ExitCode {
    talaria::main()
}
