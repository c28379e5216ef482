//! The `atbox` binary: parses the command line and hands over to [`atbox::cli`].

fn main() -> std::process::ExitCode {
    atbox::cli::main()
}
