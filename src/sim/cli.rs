//! `felhom-agent sim`: runs the simulated node by hand until SIGINT or SIGTERM.
//!
//! Prints the URL, the token and a ready-to-paste curl line on stdout, and at exit the
//! node's audit of what it was asked (it never panics on a violation here). Defaults are
//! closer to a real node than the test defaults: tasks take 1 s, a clean shutdown 2 s,
//! a VM's asynchronous config update 250 ms, 401s are delayed 3 s and a config lock is
//! waited for 10 s.

use super::fleet::{fleet, vm_fleet};
use super::handle::Sim;
use super::model::{ErrorStyle, SimOptions, TlsFiles};
use crate::exit::ExitCode;
use signal_hook::consts::{SIGINT, SIGTERM};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

const USAGE: &str =
    "usage: felhom-agent sim [--listen ADDR] [--node NAME]... [--guests N] [--vms N] \
[--state FILE] [--token ID=SECRET] [--tls-cert FILE --tls-key FILE] [--task-ms N] \
[--legacy-errors] [--verbose]";

const HELP: &str = "
Runs a simulated Proxmox VE node until SIGINT or SIGTERM.

  --listen ADDR        address to listen on (default 127.0.0.1:8006; port 0 picks one)
  --node NAME          a node of the simulated cluster; repeat for more (default pve1)
  --guests N           start with N varied containers spread over the nodes (default 10;
                       ignored when the state file exists)
  --vms N              ... and N VMs in varied states (running, paused, backed up while
                       stopped, hibernated, pending changes, HA, ...; default 10)
  --state FILE         load guests from FILE if it exists, write them back after every change
  --token ID=SECRET    the accepted API token (default agent@pve!reconciler and a random secret)
  --tls-cert FILE      serve HTTPS with this certificate chain (needs --tls-key)
  --tls-key FILE       ... and this private key
  --task-ms N          how long a start or stop task takes (default 1000; shutdown twice that)
  --legacy-errors      error bodies without \"message\", as before libpve-http-server-perl 5.2
  --verbose            log every request on stderr
";

/// Parsed command line.
#[derive(Debug, Default, PartialEq)]
struct Args {
    listen: Option<SocketAddr>,
    nodes: Vec<String>,
    guests: Option<usize>,
    vms: Option<usize>,
    state: Option<PathBuf>,
    token: Option<(String, String)>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    task_ms: Option<u64>,
    legacy: bool,
    verbose: bool,
    help: bool,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut a = Args::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = |what: &str| -> Result<String, String> {
            match inline.clone().or_else(|| it.next().cloned()) {
                Some(v) => Ok(v),
                None => Err(format!("{flag} needs a value ({what})")),
            }
        };
        match flag {
            "--listen" => {
                let v = value("an address like 127.0.0.1:8006")?;
                a.listen = Some(v.parse().map_err(|_| {
                    format!("--listen: expected an address like 127.0.0.1:8006, got {v:?}")
                })?);
            }
            "--node" => {
                let v = value("a node name")?;
                if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                    return Err(format!("--node: {v:?} is not a valid node name"));
                }
                a.nodes.push(v);
            }
            "--guests" => {
                let v = value("a number")?;
                let n = v
                    .parse()
                    .map_err(|_| format!("--guests: expected a number, got {v:?}"))?;
                a.guests = Some(n);
            }
            "--vms" => {
                let v = value("a number")?;
                let n = v
                    .parse()
                    .map_err(|_| format!("--vms: expected a number, got {v:?}"))?;
                a.vms = Some(n);
            }
            "--state" => a.state = Some(PathBuf::from(value("a file")?)),
            "--token" => {
                let v = value("ID=SECRET")?;
                // The id ends up in UPIDs, which cannot hold `:`, `/` or whitespace.
                let plain_id = |id: &str| {
                    id.contains('@')
                        && id.contains('!')
                        && !id.contains(|c: char| c == ':' || c == '/' || c.is_whitespace())
                };
                match v.rsplit_once('=') {
                    Some((id, secret)) if plain_id(id) && !secret.is_empty() => {
                        a.token = Some((id.to_string(), secret.to_string()))
                    }
                    _ => return Err("--token: expected USER@REALM!TOKENID=SECRET".to_string()),
                }
            }
            "--tls-cert" => a.tls_cert = Some(PathBuf::from(value("a PEM file")?)),
            "--tls-key" => a.tls_key = Some(PathBuf::from(value("a PEM file")?)),
            "--task-ms" => {
                let v = value("milliseconds")?;
                a.task_ms = Some(
                    v.parse()
                        .map_err(|_| format!("--task-ms: expected milliseconds, got {v:?}"))?,
                );
            }
            "--legacy-errors" => a.legacy = true,
            "--verbose" | "-v" => a.verbose = true,
            "--help" | "-h" => a.help = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if a.tls_cert.is_some() != a.tls_key.is_some() {
        return Err("--tls-cert and --tls-key go together".to_string());
    }
    Ok(a)
}

/// A random version-4 UUID from /dev/urandom, as PVE's token secrets look.
fn random_uuid() -> std::io::Result<String> {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

fn options(a: &Args) -> std::io::Result<SimOptions> {
    let (token_id, token_secret) = match &a.token {
        Some((id, secret)) => (id.clone(), secret.clone()),
        None => ("agent@pve!reconciler".to_string(), random_uuid()?),
    };
    let task = Duration::from_millis(a.task_ms.unwrap_or(1000));
    Ok(SimOptions {
        listen: a
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8006))),
        nodes: if a.nodes.is_empty() {
            vec!["pve1".to_string()]
        } else {
            a.nodes.clone()
        },
        token_id,
        token_secret,
        task_duration: task,
        shutdown_duration: task * 2,
        config_task_duration: task / 4,
        ha_task_duration: Duration::from_millis(100),
        ha_apply_delay: Duration::from_secs(3),
        lock_wait: Duration::from_secs(10),
        unauthorized_delay: Duration::from_secs(3),
        error_style: if a.legacy {
            ErrorStyle::Legacy
        } else {
            ErrorStyle::Modern
        },
        tls: match (&a.tls_cert, &a.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        },
        state_file: a.state.clone(),
        audit_on_drop: false,
        ..SimOptions::default()
    })
}

/// Runs `felhom-agent sim ARGS...`.
pub fn main(args: &[String]) -> ExitCode {
    let a = match parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("felhom-agent sim: {e}\n{USAGE}");
            return ExitCode::Usage;
        }
    };
    if a.help {
        println!("{USAGE}\n{HELP}");
        return ExitCode::Ok;
    }
    if a.verbose {
        crate::log::set_level(crate::log::Level::Debug);
    }
    // Registered before anything is printed, so a signal sent as soon as the URL shows
    // is handled, not fatal.
    let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("felhom-agent sim: cannot handle signals: {e}");
            return ExitCode::Failure;
        }
    };
    let opts = match options(&a) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("felhom-agent sim: cannot make a token secret: {e}");
            return ExitCode::Failure;
        }
    };
    let state_exists = a.state.as_ref().is_some_and(|p| p.exists());
    let (token_id, secret, nodes) = (
        opts.token_id.clone(),
        opts.token_secret.clone(),
        opts.nodes.clone(),
    );
    let sim = match Sim::start(opts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("felhom-agent sim: cannot start: {e}");
            return ExitCode::Failure;
        }
    };
    if !state_exists {
        let containers = a.guests.unwrap_or(10);
        let first_vm = 100 + containers as u32;
        let vms = vm_fleet(a.vms.unwrap_or(10), &nodes[0], first_vm);
        for (i, mut g) in fleet(containers, &nodes[0])
            .into_iter()
            .chain(vms)
            .enumerate()
        {
            g.node = nodes[i % nodes.len()].clone();
            sim.add_guest(g);
        }
    } else if a.guests.is_some() || a.vms.is_some() {
        eprintln!("felhom-agent sim: the state file exists, --guests and --vms are ignored");
    }
    let url = sim.url();
    let cacert = if url.starts_with("https") {
        "--cacert CA.pem "
    } else {
        ""
    };
    let out = format!(
        "felhom-agent sim listening on {url} (nodes: {}; {} guests)\n\
         token id: {token_id}\ntoken secret: {secret}\n\
         curl -sS {cacert}-H 'Authorization: PVEAPIToken={token_id}={secret}' \
         {url}/api2/json/nodes/{}/lxc\n",
        nodes.join(", "),
        sim.guests().len(),
        nodes[0],
    );
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
    drop(stdout);
    let signal = signals.forever().next();
    crate::log::info(
        "sim: shutting down",
        &[("signal", &signal.unwrap_or_default())],
    );
    let audit = sim.finish();
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{audit}");
    let _ = stdout.flush();
    ExitCode::Ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn parses_flags() {
        let a = parse(&args(
            "--listen 127.0.0.1:0 --node pve1 --node=pve2 --guests 20 --vms 3 \
             --token a@pve!t=s=x --task-ms 50 --legacy-errors",
        ))
        .unwrap();
        assert_eq!(a.listen, Some("127.0.0.1:0".parse().unwrap()));
        assert_eq!(a.nodes, ["pve1", "pve2"]);
        assert_eq!((a.guests, a.vms), (Some(20), Some(3)));
        assert_eq!(a.token, Some(("a@pve!t=s".to_string(), "x".to_string())));
        assert_eq!(a.task_ms, Some(50));
        assert!(a.legacy);
        let o = options(&a).unwrap();
        assert_eq!(o.error_style, ErrorStyle::Legacy);
        assert!(!o.audit_on_drop, "the audit is printed, not a panic");
        assert_eq!(o.task_duration, Duration::from_millis(50));
    }

    #[test]
    fn errors_name_the_flag() {
        let err = |s: &str| parse(&args(s)).unwrap_err();
        assert!(err("--listen nope").starts_with("--listen"));
        assert!(err("--guests").starts_with("--guests"));
        assert!(err("--guests x").starts_with("--guests"));
        assert!(err("--vms many").starts_with("--vms"));
        assert!(err("--token secret").starts_with("--token"));
        assert!(err("--token a@pve!x:y=s").starts_with("--token"));
        assert!(err("--tls-cert a").contains("--tls-key"));
        assert!(err("--bogus").contains("--bogus"));
        assert!(err("--node a_b").starts_with("--node"));
    }

    #[test]
    fn uuids_look_like_uuids() {
        let u = random_uuid().unwrap();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(u, random_uuid().unwrap());
    }
}
