//! The `felhom-agent` binary: parses arguments, sets up logging, and maps errors to exit
//! codes. Everything else lives in the library.

use felhom_agent::agent::AppError;
use felhom_agent::app;
use felhom_agent::config::DEFAULT_PATH;
use felhom_agent::exit::ExitCode;
use felhom_agent::log;
use std::path::PathBuf;

/// `{config}` stands for the default config path.
const USAGE: &str = "\
felhom-agent: keeps a Proxmox VE node's guests converged to a desired state

usage: felhom-agent <command> [options]

commands:
  run       run as a service: recover, then reconcile every interval
  once      recover, run one pass, wait for its actions, exit (0 converged, 1 failed)
  plan      show what a pass would do; changes nothing
  check     validate the config, the token file and the desired state
  status    show the last pass of the running agent
  journal   show the journal (--in-flight: ops not yet finished)
  demo      run the agent against an embedded simulated node
  sim       serve a simulated Proxmox node (see `felhom-agent sim --help`)

options:
  --config FILE      config file (default {config})
  --json             machine-readable output (plan, once, status, journal)
  --cluster          plan: what every node's agent would do, from any node
  --log-level LEVEL  debug, info, warn or error (default info)
  --in-flight        journal: only ops still in flight
  --tail N           journal: only the last N records
  --version          print the version

exit codes: 0 ok, 1 runtime error or failed action, 2 usage or config error,
            3 journal corruption, 4 journal could not be synced
";

fn usage() -> String {
    USAGE.replace("{config}", DEFAULT_PATH)
}

struct Args {
    command: String,
    config: PathBuf,
    json: bool,
    in_flight: bool,
    tail: Option<usize>,
    cluster: bool,
}

fn parse(args: &[String]) -> Result<Args, AppError> {
    let usage = |m: String| AppError::Usage(format!("{m}\n\n{}", usage()));
    let mut out = Args {
        command: String::new(),
        config: PathBuf::from(DEFAULT_PATH),
        json: false,
        in_flight: false,
        tail: None,
        cluster: false,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |flag: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| usage(format!("{flag} needs a value")))
        };
        match arg.as_str() {
            "--config" => out.config = PathBuf::from(value("--config")?),
            "--json" => out.json = true,
            "--in-flight" => out.in_flight = true,
            "--cluster" => out.cluster = true,
            "--tail" => {
                let v = value("--tail")?;
                out.tail = Some(
                    v.parse()
                        .map_err(|_| usage(format!("--tail takes a whole number, got {v:?}")))?,
                );
            }
            "--log-level" => {
                let v = value("--log-level")?;
                log::set_level(v.parse().map_err(usage)?);
            }
            flag if flag.starts_with('-') => return Err(usage(format!("unknown option {flag:?}"))),
            cmd if out.command.is_empty() => out.command = cmd.to_string(),
            extra => return Err(usage(format!("unexpected argument {extra:?}"))),
        }
    }
    Ok(out)
}

fn main() -> std::process::ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    let first = argv.get(1).map(String::as_str);
    // These parse their own arguments.
    match first {
        #[cfg(feature = "sim")]
        Some("sim") => return felhom_agent::sim::cli::main(&argv[2..]).into(),
        #[cfg(feature = "sim")]
        Some("demo") => return felhom_agent::demo::main(&argv[2..]).into(),
        #[cfg(not(feature = "sim"))]
        Some(cmd @ ("sim" | "demo")) => {
            eprintln!(
                "felhom-agent: `{cmd}` is not in this build (built without the `sim` feature); \
                 use a default build, e.g. `cargo run --release -- {cmd}`"
            );
            return ExitCode::Usage.into();
        }
        Some("--version" | "version") => {
            // Says which build this is, so the wrong one is not copied onto a node.
            let build = if cfg!(feature = "sim") {
                "development build with the simulated node (sim, demo); build the node binary with ./build.sh"
            } else {
                "node build"
            };
            println!("felhom-agent {} ({build})", env!("CARGO_PKG_VERSION"));
            return ExitCode::Ok.into();
        }
        Some("--help" | "-h" | "help") | None => {
            print!("{}", usage());
            return if first.is_none() {
                ExitCode::Usage
            } else {
                ExitCode::Ok
            }
            .into();
        }
        _ => {}
    }
    let args = match parse(&argv[1..]) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("felhom-agent: {e}");
            return e.exit_code().into();
        }
    };
    let result = match args.command.as_str() {
        "run" => felhom_agent::daemon::run(&args.config),
        "once" => app::once(&args.config, args.json),
        "plan" if args.cluster => app::cluster::plan(&args.config, args.json),
        _ if args.cluster => Err(AppError::Usage("--cluster goes with plan only".into())),
        "plan" => app::plan(&args.config, args.json),
        "check" => app::check(&args.config),
        "status" => app::status(&args.config, args.json),
        "journal" => app::journal(&args.config, args.in_flight, args.json, args.tail),
        other => Err(AppError::Usage(format!(
            "unknown command {other:?}\n\n{}",
            usage()
        ))),
    };
    match result {
        Ok(code) => code.into(),
        Err(e) => {
            let code = e.exit_code();
            if args.command == "run" {
                // The service's stderr goes to journald or svlogd: one logfmt line.
                log::error(&e.to_string(), &[("exit", &code.code())]);
            } else {
                // A person at a terminal: the message as written, one problem per line.
                eprintln!("felhom-agent: {e}");
            }
            code.into()
        }
    }
}
