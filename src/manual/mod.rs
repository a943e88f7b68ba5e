//! The agent's documentation as data: commands and their options, config keys, the
//! desired-state fields, signals, exit codes, environment and files. `--help`, the man
//! page (`felhom-agent --generate man`) and the bash completion
//! (`--generate complete-bash`) are all rendered from here, so they cannot disagree;
//! tests hold the README, the config parser's keys and the exit codes to the same
//! lists.
//!
//! Text is ASCII. A span in backticks is code: bold in the man page, plain in `--help`.
//! Paragraphs are separated by an empty line.
//!
//! The node binary has a size budget (see build.sh): `--help` reads only what it shows,
//! and the man page and the completion are rendered by development builds (the `sim`
//! feature), which is how `./build.sh deb` makes them.

mod bash;
mod help;
mod roff;
#[cfg(test)]
mod tests;

pub use bash::completion;
pub use help::{command_help, usage};
pub use roff::man_page;

/// One command of the binary.
#[derive(Debug)]
pub struct Command {
    pub name: &'static str,
    /// What comes after the command in its synopsis, besides `[options]`.
    pub args: &'static str,
    /// One line, for the command list.
    pub summary: &'static str,
    /// A short paragraph for its `--help` and the man page; [`DETAILS`] has more, for
    /// the man page only.
    pub text: &'static str,
    /// Its options: a name from [`OPTIONS`] and what it means here, or "" for the
    /// option's own help.
    pub options: &'static [(&'static str, &'static str)],
    /// Only in development builds (the `sim` feature), not in the node binary.
    pub dev_only: bool,
}

/// One option; [`Command::options`] says which commands take it.
#[derive(Debug)]
pub struct Opt {
    pub name: &'static str,
    /// The value's placeholder (`FILE`), or "" for a flag.
    pub value: &'static str,
    pub help: &'static str,
}

/// One key of the config file.
#[derive(Debug)]
pub struct ConfigKey {
    pub key: &'static str,
    pub default: &'static str,
    pub meaning: &'static str,
    /// A change takes effect only at the next start, not at a reload.
    pub restart: bool,
}

/// A name and what it means: desired-state fields, signals, environment, files.
pub type Entry = (&'static str, &'static str);

/// The config file read when `--config` is not given.
pub const CONFIG_PATH: &str = crate::config::DEFAULT_PATH;

/// What `felhom-agent` is, in one line.
pub const ABOUT: &str = "keeps a Proxmox VE node's guests converged to a desired state";

/// The man page's DESCRIPTION.
pub const DESCRIPTION: &str = "\
felhom-agent runs on every Proxmox VE node and keeps that node's LXC containers \
converged to a declared desired state: it starts them, shuts them down, and updates \
their cores, memory, swap, description, onboot flag and tags. It never creates, \
destroys, migrates or reboots a guest, and never touches a guest the desired state \
does not name.

One intent is never sent to Proxmox twice, and a guest never has two actions in \
flight: every action is journaled (`/var/lib/felhom-agent/journal`) before the API \
call, and the task's UPID before the wait. When the agent cannot tell how an action \
ended, it holds that guest, sending it nothing, until the node says.

On a new node, `export` writes a desired state that matches what runs today, so the \
first pass after adopting it changes nothing; `plan` shows what a pass would do.";

pub const OPTIONS: &[Opt] = &[
    Opt {
        name: "--config",
        value: "FILE",
        help: "the config file (default `/etc/felhom-agent/config.json`)",
    },
    Opt {
        name: "--log-level",
        value: "LEVEL",
        help: "`debug`, `info`, `warn` or `error` (default `info`)",
    },
    Opt {
        name: "--json",
        value: "",
        help: "print JSON instead of text",
    },
    Opt {
        name: "--cluster",
        value: "",
        help: "what every node's agent would do, read from any node",
    },
    Opt {
        name: "--in-flight",
        value: "",
        help: "only the ops still in flight",
    },
    Opt {
        name: "--tail",
        value: "N",
        help: "only the last N records",
    },
    Opt {
        name: "--abandon",
        value: "OP",
        help: "end op OP, in flight with no task, as abandoned (with the service stopped)",
    },
    Opt {
        name: "--vmid",
        value: "LIST",
        help: "the guests with these vmids, comma-separated; may be repeated",
    },
    Opt {
        name: "--tag",
        value: "TAG",
        help: "the guests with this tag; comma-separated, may be repeated",
    },
    Opt {
        name: "--all",
        value: "",
        help: "every guest on the node",
    },
    Opt {
        name: "--help",
        value: "",
        help: "this help",
    },
];

/// Options that stand in place of a command.
pub const TOP_OPTIONS: &[Opt] = &[
    Opt {
        name: "--help",
        value: "",
        help: "this list; `felhom-agent COMMAND --help` for one command",
    },
    Opt {
        name: "--version",
        value: "",
        help: "the version, and which build this is",
    },
    Opt {
        name: "--generate",
        value: "KIND",
        help: "`man` or `complete-bash` (development builds), or the desired state's \
               `vmids` (takes `--config`)",
    },
];

/// What `--generate` prints.
pub const GENERATE: &[&str] = &["man", "complete-bash", "vmids"];

/// Log levels, for `--log-level`.
pub const LOG_LEVELS: &[&str] = &["debug", "info", "warn", "error"];

/// `sim`'s own options (it parses them itself; tested against `sim --help`), for the
/// completion.
pub const SIM_OPTIONS: &[&str] = &[
    "--listen",
    "--node",
    "--guests",
    "--state",
    "--token",
    "--tls-cert",
    "--tls-key",
    "--task-ms",
    "--legacy-errors",
    "--verbose",
    "--help",
];

const COMMON: &[(&str, &str)] = &[("--config", ""), ("--log-level", ""), ("--help", "")];

pub const COMMANDS: &[Command] = &[
    Command {
        name: "run",
        args: "",
        summary: "run as a service: recover, then reconcile every interval",
        text: "\
Recovers what an earlier run left in flight, then runs a pass every \
`interval_secs` until SIGTERM or SIGINT. One agent per state directory.",
        options: COMMON,
        dev_only: false,
    },
    Command {
        name: "once",
        args: "",
        summary: "run one pass and wait for its actions",
        text: "\
Exit 0 when every guest converged or was skipped, 1 when an action failed. It \
cannot run beside the service.",
        options: &[
            ("--config", ""),
            ("--json", "print the pass report as JSON"),
            ("--log-level", ""),
            ("--help", ""),
        ],
        dev_only: false,
    },
    Command {
        name: "plan",
        args: "",
        summary: "show what a pass would do; changes nothing",
        text: "\
What a pass would do, and which guests it would skip and why. Read-only: it \
runs beside the service. With --cluster, what every node's agent would do, read \
through this node's API, with the desired guests on no node and those named twice.",
        options: &[
            ("--config", ""),
            ("--json", "print the plan as JSON"),
            ("--cluster", "every node's plan, from any node"),
            ("--log-level", ""),
            ("--help", ""),
        ],
        dev_only: false,
    },
    Command {
        name: "check",
        args: "",
        summary: "validate the config, the token file and the desired state",
        text: "\
Names the file, line and key of every problem. It does not contact the node.",
        options: COMMON,
        dev_only: false,
    },
    Command {
        name: "export",
        args: "(--vmid LIST | --tag TAG | --all)",
        summary: "print the chosen guests as a desired state, as they are now",
        text: "\
Prints the chosen guests (containers and VMs) as they are now, in the desired-state \
format, so that adopting it plans nothing. Fields a desired state cannot hold, or with \
a change pending until a restart, are left out and noted on stderr. Read-only.",
        options: &[
            ("--vmid", ""),
            ("--tag", ""),
            ("--all", ""),
            ("--json", "the default"),
            ("--config", ""),
            ("--log-level", ""),
            ("--help", ""),
        ],
        dev_only: false,
    },
    Command {
        name: "status",
        args: "",
        summary: "show the last pass of the running agent",
        text: "\
The running agent's last pass: what converged, drifted, was blocked or skipped, \
and why.",
        options: &[
            ("--config", ""),
            ("--json", "print status.json as it is"),
            ("--log-level", ""),
            ("--help", ""),
        ],
        dev_only: false,
    },
    Command {
        name: "journal",
        args: "",
        summary: "show the journal, or the ops still in flight",
        text: "\
The journal, read-only. With `--in-flight`, only the ops not yet ended, whose \
guests are held. With `--abandon OP` (the service stopped: it takes the state \
directory's lock), op OP, in flight with no task journaled, is ended as abandoned \
and its guest is no longer held: only for an op the node will never explain, after \
the guest's task log shows that its request never ran.",
        options: &[
            ("--config", ""),
            ("--in-flight", ""),
            ("--tail", ""),
            ("--abandon", ""),
            ("--json", ""),
            ("--log-level", ""),
            ("--help", ""),
        ],
        dev_only: false,
    },
    Command {
        name: "demo",
        args: "",
        summary: "run the agent against an embedded simulated node",
        // Not carried by the node build, which has no such command.
        text: "\
A simulated node with a drifted fleet: the plan, its actions, then a hand edit \
repaired by the next pass.",
        options: &[("--help", "")],
        dev_only: true,
    },
    Command {
        name: "sim",
        args: "",
        summary: "serve a simulated Proxmox node (see `felhom-agent sim --help`)",
        // Not carried by the node build, which has no such command.
        text: "\
A simulated Proxmox VE node until SIGINT or SIGTERM; `felhom-agent sim --help` \
lists its options.",
        options: &[("--help", "")],
        dev_only: true,
    },
];

/// More about some commands, for the man page only (the node binary does not carry
/// it: only the man page refers to it).
pub const DETAILS: &[(&str, &str)] = &[
    (
        "run",
        "\
Under systemd the unit is `Type=notify`: READY=1 after recovery, RELOADING=1 and \
READY=1 around a reload, STOPPING=1, a one-line STATUS= after every pass, and \
WATCHDOG=1 pings when `WatchdogSec` is set. Log lines go to stderr as logfmt. It \
takes the state directory's lock.",
    ),
    (
        "once",
        "It takes the state directory's lock, like `run`, and writes status.json.",
    ),
    (
        "plan",
        "\
It prints one line per guest that would get actions, then pending drift, then skipped \
guests with the reason: a guest with an op in flight shows as skipped, and why. It \
reads the journal file but never opens it for writing.",
    ),
    (
        "export",
        "\
Each chosen guest, container or virtual machine, gets its run state, its name (a \
container's hostname), and every managed field of its kind from the active config, \
written the way the planner compares it: absent onboot is false, absent memory is 512, \
tags are lowercased, sorted and de-duplicated; a container's absent swap is 0 and its \
description loses its trailing newlines; a VM gets `\"type\": \"qemu\"`, absent cores \
and sockets are 1, and its description loses its trailing whitespace. A VM's run state \
is read from its `status/current`. `--vmid` and `--tag` may be combined; a vmid that is \
not on the node is an error, and nothing is printed.

Left out, each with a note on stderr: a container's `cores` when unset (all host \
cores); a VM's `balloon` when unset (its target follows memory); a value the \
desired-state parser refuses; a field with a change waiting in PVE's pending section, \
which the agent would otherwise undo after the guest's next restart; the `state` of a \
VM the agent leaves alone (paused, prelaunch, io-error, suspended, hibernated, a \
stopped VM being backed up). Locked guests and guests with an op of the agent in \
flight are noted too.",
    ),
];

pub const CONFIG_KEYS: &[ConfigKey] = &[
    ConfigKey {
        key: "api_url",
        default: "`https://127.0.0.1:8006`",
        meaning: "the node's API; `http://` only to 127.0.0.0/8 written as a number",
        restart: true,
    },
    ConfigKey {
        key: "node",
        default: "short hostname",
        meaning: "this node's name in PVE",
        restart: true,
    },
    ConfigKey {
        key: "token_id",
        default: "required",
        meaning: "the API token, `USER@REALM!TOKENID`",
        restart: true,
    },
    ConfigKey {
        key: "token_secret_file",
        default: "required",
        meaning: "the file holding the token's secret; mode 0600 or stricter",
        restart: true,
    },
    ConfigKey {
        key: "ca_file",
        default: "`/etc/pve/pve-root-ca.pem` if it exists",
        meaning: "the CA to trust; without one, the system trust store",
        restart: true,
    },
    ConfigKey {
        key: "desired_file",
        default: "none",
        meaning: "the desired state; with none, a pass plans nothing and changes nothing",
        restart: false,
    },
    ConfigKey {
        key: "desired_url",
        default: "none",
        meaning: "fetch the desired state from this URL instead (`https://`, or `http://` to \
                  127.0.0.0/8 by number); not with `desired_file`",
        restart: false,
    },
    ConfigKey {
        key: "desired_token_file",
        default: "none",
        meaning: "file holding a bearer token for `desired_url`; mode 0600 or stricter",
        restart: false,
    },
    ConfigKey {
        key: "desired_ca_file",
        default: "the system roots",
        meaning: "the CA that vouches for `desired_url` and `report_url`",
        restart: true,
    },
    ConfigKey {
        key: "desired_interval_secs",
        default: "`interval_secs`",
        meaning: "how often `desired_url` is asked (plus or minus 10 % jitter)",
        restart: false,
    },
    ConfigKey {
        key: "report_url",
        default: "none",
        meaning: "POST the status document here after every pass, best effort",
        restart: false,
    },
    ConfigKey {
        key: "state_dir",
        default: "`/var/lib/felhom-agent`",
        meaning: "the journal and status.json",
        restart: true,
    },
    ConfigKey {
        key: "interval_secs",
        default: "30",
        meaning: "seconds between passes (plus or minus 10 % jitter)",
        restart: false,
    },
    ConfigKey {
        key: "max_parallel",
        default: "4",
        meaning: "mutating calls or tasks in flight at once, across guests (1 to 64)",
        restart: true,
    },
    ConfigKey {
        key: "task_timeout_secs",
        default: "600",
        meaning: "how long to wait for one Proxmox task; at least twice \
                  `shutdown_timeout_secs` plus 30",
        restart: true,
    },
    ConfigKey {
        key: "shutdown_timeout_secs",
        default: "60",
        meaning: "the graceful shutdown's `timeout`; then `forceStop=1` kills the guest",
        restart: false,
    },
    ConfigKey {
        key: "drain_timeout_secs",
        default: "20",
        meaning: "on SIGTERM, how long in-flight actions may finish",
        restart: false,
    },
    ConfigKey {
        key: "unanswered_grace_secs",
        default: "120",
        meaning: "how long a start, stop or config update that got no answer may go \
                  unexplained by the node before it is taken as not carried out (5 to 3600)",
        restart: true,
    },
    ConfigKey {
        key: "stop_mode",
        default: "`shutdown`",
        meaning: "`shutdown` (graceful, then forced) or `stop` (hard)",
        restart: false,
    },
    ConfigKey {
        key: "hold_tag",
        default: "`felhom-hold`",
        meaning: "a guest carrying this PVE tag is left alone until the tag goes; the agent \
                  never adds or removes it",
        restart: false,
    },
    ConfigKey {
        key: "identity_guard",
        default: "`true`",
        meaning: "a desired `name` must match the live guest's name, or the guest is left \
                  alone",
        restart: false,
    },
    ConfigKey {
        key: "ha_mode",
        default: "`skip`",
        meaning: "`skip` leaves HA-managed guests to ha-manager; `request` drives them \
                  through HA requests and verifies their state",
        restart: false,
    },
    ConfigKey {
        key: "metrics_file",
        default: "none",
        meaning: "a Prometheus text file, rewritten after every pass",
        restart: false,
    },
    ConfigKey {
        key: "journal_compact_bytes",
        default: "4194304",
        meaning: "compact the journal past this size",
        restart: true,
    },
];

/// The desired-state file's top level.
pub const DESIRED_TEXT: &str = "\
JSON: `{\"version\": 1, \"guests\": [...]}`, one object per managed guest. `vmid` is \
required; every other field is optional, and an absent field is not managed. Values \
are compared the way PVE stores them. An invalid file causes no action: every problem \
is reported with file, line, column and guest, and after a SIGHUP the last good \
desired state stays in force.";

/// A guest's fields, in the order the file documents them.
pub const DESIRED_FIELDS: &[Entry] = &[
    ("vmid", "the guest's id, 100 to 999999999; required"),
    (
        "type",
        "`lxc` or `qemu`; optional, the agent finds the kind of the live guest",
    ),
    (
        "name",
        "when given, the live guest's name must match (a guard against a reused vmid); \
         `export` writes it",
    ),
    ("state", "`running` or `stopped`"),
    (
        "cores",
        "1 to 8192 (absent in PVE: all host cores for a container, 1 for a VM)",
    ),
    ("sockets", "VMs only: 1 to 4096 (absent in PVE means 1)"),
    ("memory", "MiB, at least 16"),
    (
        "balloon",
        "VMs only: MiB; 0 turns the balloon device off (absent: the memory)",
    ),
    (
        "swap",
        "containers only: MiB, 0 or more (absent in PVE means 0)",
    ),
    (
        "description",
        "up to 8 KiB of text; trailing newlines do not count",
    ),
    ("onboot", "`true` or `false` (absent in PVE means false)"),
    (
        "tags",
        "a list of tags in PVE's syntax; case, order and duplicates do not count",
    ),
    (
        "once",
        "one-shot power actions, `[{\"key\": \"...\", \"action\": \"start\"}]`: each key \
         is carried out at most once per guest, ever; in a cluster each entry names the node \
         whose agent carries it out (`\"node\": \"pve1\"`)",
    ),
];

pub const SIGNALS: &[Entry] = &[
    (
        "SIGHUP",
        "re-read the config and the desired state; both are swapped in only if both are \
         valid, and a pass runs at once (`systemctl reload felhom-agent`)",
    ),
    ("SIGUSR1", "run a pass now"),
    (
        "SIGTERM, SIGINT",
        "drain: no new action starts; in-flight calls and task waits get \
         `drain_timeout_secs`; what is still running stays in flight in the journal; \
         exit 0. A second signal exits at once (exit 1)",
    ),
];

/// Exit codes: the number and a few words, for `--help`.
pub const EXIT_CODES: &[(i32, &str)] = &[
    (0, "ok"),
    (1, "runtime error or failed action"),
    (2, "usage or config error"),
    (3, "journal corruption"),
    (4, "journal could not be synced"),
    (5, "internal error"),
];

/// What each exit code means, for the man page; in the order of [`EXIT_CODES`].
pub const EXIT_MEANINGS: &[&str] = &[
    "success; for `once`, every guest converged or was skipped",
    "a runtime error; for `once`, an action failed",
    "a usage, config or desired-state error",
    "the journal is corrupt: a person must look before the agent runs again \
     (the systemd unit does not restart it)",
    "the journal could not be synced; the unit restarts the agent and recovery runs",
    "an internal thread died (a bug); the unit restarts the agent and recovery runs",
];

pub const ENVIRONMENT: &[Entry] = &[
    (
        "NOTIFY_SOCKET",
        "set by systemd for `Type=notify`: readiness, reload, stopping, status and watchdog \
         messages go there",
    ),
    (
        "WATCHDOG_USEC",
        "set by systemd with `WatchdogSec`: the run loop pings at half that interval",
    ),
    (
        "JOURNAL_STREAM",
        "set when stderr goes to journald: log lines then carry no timestamp of their own",
    ),
];

pub const FILES: &[Entry] = &[
    (
        "/etc/felhom-agent/config.json",
        "the config (a conffile of the Debian package)",
    ),
    (
        "/etc/felhom-agent/token",
        "the API token's secret, mode 0600; create it yourself",
    ),
    (
        "/etc/felhom-agent/desired.json",
        "the desired state; `export` writes a first one",
    ),
    (
        "/var/lib/felhom-agent/journal",
        "the journal: every action, before and after it touches Proxmox",
    ),
    (
        "/var/lib/felhom-agent/status.json",
        "the last pass, for `status`",
    ),
    (
        "/etc/pve/pve-root-ca.pem",
        "the cluster CA, trusted when `ca_file` is not set",
    ),
    (
        "/usr/lib/systemd/system/felhom-agent.service",
        "the systemd unit; the package neither enables nor starts it",
    ),
    (
        "/usr/share/doc/felhom-agent/examples/",
        "a runit service directory (runit/), a Grafana dashboard and Prometheus alerting rules",
    ),
];

/// Shell lines with a comment above each group.
pub const EXAMPLES: &str = "\
# an API token with only what the agent needs (privilege separation on)
pveum role add FelhomAgent --privs \"VM.Audit VM.PowerMgmt VM.Config.CPU VM.Config.Memory VM.Config.Options\"
pveum user add felhom@pve
pveum user token add felhom@pve agent --privsep 1
pveum acl modify /vms --users felhom@pve --tokens 'felhom@pve!agent' --roles FelhomAgent
pveum acl modify /nodes/$(hostname -s) --users felhom@pve --tokens 'felhom@pve!agent' --roles PVEAuditor

# store the token's secret (paste it, then Ctrl-D)
install -m 600 /dev/stdin /etc/felhom-agent/token
# adopt what runs today, check it, and see that a pass would change nothing
felhom-agent export --all > /etc/felhom-agent/desired.json
felhom-agent check
felhom-agent plan
systemctl enable --now felhom-agent

# adopt only the production guests, and guest 120
felhom-agent export --tag prod --vmid 120 > /etc/felhom-agent/desired.json

# after editing the desired state: see the plan, then apply it
felhom-agent plan && systemctl reload felhom-agent

# what the agent did, and what it is waiting on
felhom-agent status
felhom-agent journal --tail 20
felhom-agent journal --in-flight";

/// The command named `name`.
pub fn command(name: &str) -> Option<&'static Command> {
    COMMANDS.iter().find(|c| c.name == name)
}

/// The option named `name`.
pub fn option(name: &str) -> Option<&'static Opt> {
    OPTIONS.iter().find(|o| o.name == name)
}
