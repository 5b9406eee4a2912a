//! The `routevpn` binary; everything lives in the library (see `routevpn::cli`).

fn main() -> std::process::ExitCode {
    routevpn::cli::main()
}
