//! The `felhom-agent` binary: parses arguments, sets up logging and signals, and maps
//! errors to exit codes. Everything else lives in the library.

use felhom_agent::exit::ExitCode;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("sim") => felhom_agent::sim::cli::main(&args[2..]).into(),
        _ => {
            eprintln!("felhom-agent: no commands yet");
            ExitCode::Usage.into()
        }
    }
}
