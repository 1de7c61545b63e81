//! The `sesam` binary: everything is in sesam-server; this only hands over the command line.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    sesam_server::cli::main()
}
