//! The Landlock backend's helper (`talaria-sandbox`), built in this package so the escape suite
//! can find it next to its test binary.

fn main() {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    std::process::exit(talaria_sandbox::main_with_args(&args));
}
