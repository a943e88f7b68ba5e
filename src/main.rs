//! The `felhom-agent` binary: parses arguments, sets up logging and signals, and maps
//! errors to exit codes. Everything else lives in the library.

use felhom_agent::exit::ExitCode;

fn main() -> std::process::ExitCode {
    eprintln!("felhom-agent: no commands yet");
    ExitCode::Usage.into()
}
