//! `sluice`: the operator's command line. Everything lives in `sluice_coordinator::cli`.

fn main() -> std::process::ExitCode {
    sluice_coordinator::cli::main_with(std::env::args_os())
}
