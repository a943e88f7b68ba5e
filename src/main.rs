//! The `felhom-agent` binary: parses arguments, sets up logging, and maps errors to exit
//! codes. Everything else lives in the library; what the commands and options are,
//! and their help, comes from [`felhom_agent::manual`].

use felhom_agent::agent::AppError;
use felhom_agent::app;
use felhom_agent::app::export::Selection;
use felhom_agent::config::DEFAULT_PATH;
use felhom_agent::exit::ExitCode;
use felhom_agent::log;
use felhom_agent::manual;
use felhom_agent::pve::Vmid;
use std::path::PathBuf;

/// Whether this build has the development commands (`sim`, `demo`).
const DEV: bool = cfg!(feature = "sim");

fn usage() -> String {
    manual::usage(DEV)
}

struct Args {
    command: String,
    config: PathBuf,
    json: bool,
    in_flight: bool,
    tail: Option<usize>,
    abandon: Option<u64>,
    help: bool,
    cluster: bool,
    all: bool,
    vmids: Vec<Vmid>,
    tags: Vec<String>,
}

fn usage_error(m: String) -> AppError {
    AppError::Usage(format!("{m}\n\n{}", usage()))
}

fn parse(args: &[String]) -> Result<Args, AppError> {
    let mut out = Args {
        command: String::new(),
        config: PathBuf::from(DEFAULT_PATH),
        json: false,
        in_flight: false,
        tail: None,
        abandon: None,
        help: false,
        all: false,
        vmids: Vec::new(),
        tags: Vec::new(),
        cluster: false,
    };
    let mut given = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |flag: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| usage_error(format!("{flag} needs a value")))
        };
        let flag = if arg == "-h" { "--help" } else { arg.as_str() };
        match flag {
            "--config" => out.config = PathBuf::from(value(flag)?),
            "--json" => out.json = true,
            "--in-flight" => out.in_flight = true,
            "--help" => out.help = true,
            "--all" => out.all = true,
            "--cluster" => out.cluster = true,
            "--tail" => {
                let v = value(flag)?;
                out.tail =
                    Some(v.parse().map_err(|_| {
                        usage_error(format!("--tail takes a whole number, got {v:?}"))
                    })?);
            }
            "--abandon" => {
                let v = value(flag)?;
                out.abandon = Some(v.parse().map_err(|_| {
                    usage_error(format!("--abandon takes an op number, got {v:?}"))
                })?);
            }
            "--vmid" => {
                for v in value(flag)?.split(',').filter(|v| !v.trim().is_empty()) {
                    out.vmids
                        .push(v.parse().map_err(|e| usage_error(format!("--vmid: {e}")))?);
                }
            }
            "--tag" => out.tags.extend(
                value(flag)?
                    .split(',')
                    .map(|t| t.trim().to_lowercase())
                    .filter(|t| !t.is_empty()),
            ),
            "--log-level" => {
                let v = value(flag)?;
                log::set_level(v.parse().map_err(usage_error)?);
            }
            flag if flag.starts_with('-') => {
                return Err(usage_error(format!("unknown option {flag:?}")))
            }
            cmd if out.command.is_empty() => {
                out.command = cmd.to_string();
                continue;
            }
            extra => return Err(usage_error(format!("unexpected argument {extra:?}"))),
        }
        given.push(flag.to_string());
    }
    // Each command takes only its own options.
    if let Some(cmd) = manual::command(&out.command) {
        if let Some(flag) = given
            .iter()
            .find(|f| !cmd.options.iter().any(|(name, _)| name == f))
        {
            return Err(AppError::Usage(format!(
                "{} does not take {flag}\n\n{}",
                cmd.name,
                manual::command_help(cmd)
            )));
        }
    }
    Ok(out)
}

/// The guests `export` should write, from its options.
fn selection(args: &Args) -> Result<Selection, AppError> {
    let chosen = !args.vmids.is_empty() || !args.tags.is_empty();
    let help = || manual::command_help(manual::command("export").expect("export is documented"));
    match (args.all, chosen) {
        (true, false) => Ok(Selection::All),
        (false, true) => Ok(Selection::Chosen {
            vmids: args.vmids.clone(),
            tags: args.tags.clone(),
        }),
        (true, true) => Err(AppError::Usage(format!(
            "export: --all cannot be combined with --vmid or --tag\n\n{}",
            help()
        ))),
        (false, false) => Err(AppError::Usage(format!(
            "export: choose the guests with --vmid, --tag or --all\n\n{}",
            help()
        ))),
    }
}

/// `felhom-agent --generate KIND [--config FILE]`.
fn generate(args: &[String]) -> Result<ExitCode, AppError> {
    let (kind, rest) = match args {
        [kind, rest @ ..] => (kind.as_str(), rest),
        [] => return Err(usage_error("--generate needs a value".into())),
    };
    let config = match rest {
        [] => PathBuf::from(DEFAULT_PATH),
        [flag, path] if flag == "--config" && kind == "vmids" => PathBuf::from(path),
        _ => return Err(usage_error(format!("unexpected arguments {rest:?}"))),
    };
    match kind {
        // Rendered by development builds only: the node binary has a size budget, and
        // the Debian package installs both (./build.sh deb renders them).
        #[cfg(feature = "sim")]
        "man" => print!("{}", manual::man_page()),
        #[cfg(feature = "sim")]
        "complete-bash" => print!("{}", manual::completion()),
        #[cfg(not(feature = "sim"))]
        "man" | "complete-bash" => {
            return Err(AppError::Usage(format!(
                "--generate {kind}: development builds only; the Debian package installs it"
            )))
        }
        "vmids" => {
            let config = felhom_agent::config::Config::load(&config)?;
            // The last good state, for a URL: completion never fetches.
            let desired = felhom_agent::agent::provider_for(&config)?.load()?;
            for vmid in desired.guests.keys() {
                println!("{vmid}");
            }
        }
        other => {
            return Err(usage_error(format!(
                "--generate takes {}, got {other:?}",
                manual::GENERATE.join(", ")
            )))
        }
    }
    Ok(ExitCode::Ok)
}

/// Prints a command's help; `sim` has its own.
fn help(command: &str) -> ExitCode {
    #[cfg(feature = "sim")]
    if command == "sim" {
        return felhom_agent::sim::cli::main(&["--help".to_string()]);
    }
    match manual::command(command) {
        Some(c) => {
            print!("{}", manual::command_help(c));
            ExitCode::Ok
        }
        None => {
            eprintln!("felhom-agent: unknown command {command:?}\n\n{}", usage());
            ExitCode::Usage
        }
    }
}

fn main() -> std::process::ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    let first = argv.get(1).map(String::as_str);
    let wants_help = matches!(argv.get(2).map(String::as_str), Some("--help" | "-h"));
    // These parse their own arguments.
    match first {
        Some("demo") if wants_help => return help("demo").into(),
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
            let build = if DEV {
                "development build with the simulated node (sim, demo); build the node binary with ./build.sh"
            } else {
                "node build"
            };
            println!("felhom-agent {} ({build})", env!("CARGO_PKG_VERSION"));
            return ExitCode::Ok.into();
        }
        Some("--generate") => {
            return match generate(&argv[2..]) {
                Ok(code) => code.into(),
                Err(e) => {
                    eprintln!("felhom-agent: {e}");
                    e.exit_code().into()
                }
            }
        }
        Some("help") if argv.len() == 3 => return help(&argv[2]).into(),
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
    if args.help {
        if args.command.is_empty() {
            print!("{}", usage());
            return ExitCode::Ok.into();
        }
        return help(&args.command).into();
    }
    let result = match args.command.as_str() {
        "run" => felhom_agent::daemon::run(&args.config),
        "once" => app::once(&args.config, args.json),
        "plan" if args.cluster => app::cluster::plan(&args.config, args.json),
        "plan" => app::plan(&args.config, args.json),
        "check" => app::check(&args.config),
        "export" => selection(&args).and_then(|s| app::export(&args.config, &s)),
        "status" => app::status(&args.config, args.json),
        "journal" => match args.abandon {
            Some(op) => app::abandon(&args.config, op),
            None => app::journal(&args.config, args.in_flight, args.json, args.tail),
        },
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
