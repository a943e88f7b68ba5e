//! The LXC config keys the simulated node knows, their types, how a running container
//! takes a change to each (pve-container `src/PVE/LXC/Config.pm`: `$confdesc`,
//! `$LXC_FASTPLUG_OPTIONS`, `vmconfig_hotplug_pending`), and PVE's parameter checks and
//! normalisers, for containers and VMs (whose key table is in `vmschema`).
//!
//! Error texts are pve-common `JSONSchema.pm` `check_prop`/`check_type` verbatim.

/// The type of a parameter or config value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Kind {
    Int {
        min: i64,
        max: Option<i64>,
    },
    Number {
        min: f64,
        max: f64,
    },
    /// Exactly `0` or `1` on input.
    Bool,
    Str {
        max_len: Option<usize>,
    },
    Enum(&'static [&'static str]),
    /// `pve-tag-list`.
    Tags,
    /// A string of at most 8 KiB, stored as comment lines.
    Description,
    /// `dns-name`, at most 255 characters.
    DnsName,
    /// `pve-configid-list` (`delete`, `revert`).
    ConfigIdList,
    /// A VM's `memory`: the property string `[current=]<integer>`, at least 16.
    Memory,
    /// A VM's `hotplug`: `0`, `1`, or a list of `network disk cpu memory usb cloudinit`.
    Hotplug,
}

/// What happens to a change of this key while the container runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Plug {
    /// Written straight into the config (`$LXC_FASTPLUG_OPTIONS`).
    Fast,
    /// Applied through cgroups or hotplug, so also immediate.
    Hot,
    /// Immediate when the key is not set yet (a new mount point or device), else pending.
    HotIfNew,
    /// Waits in `[pve:pending]` until the next stop or start.
    Pending,
    /// Cannot be changed or deleted (`unprivileged`).
    ReadOnly,
    /// VM: applied live only when the VM's active `hotplug` lists this feature
    /// (`cpu` for `vcpus`, `memory`, `network`, `disk`, `usb`), else pending.
    Feature(&'static str),
    /// VM `balloon`: applied live unless it switches the balloon device on or off.
    Balloon,
    /// VM `hotplug`: applied live unless the old or new value involves `cpu` or
    /// `memory`.
    HotplugOpt,
}

/// What the simulated node knows about one config key.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct KeyDesc {
    pub kind: Kind,
    pub plug: Plug,
}

const LOCKS: &[&str] = &[
    "backup",
    "create",
    "destroyed",
    "disk",
    "fstrim",
    "migrate",
    "mounted",
    "rollback",
    "snapshot",
    "snapshot-delete",
];
const OSTYPES: &[&str] = &[
    "debian",
    "devuan",
    "ubuntu",
    "centos",
    "fedora",
    "opensuse",
    "archlinux",
    "alpine",
    "gentoo",
    "nixos",
    "unmanaged",
];
const ARCHES: &[&str] = &["amd64", "i386", "arm64", "armhf", "riscv32", "riscv64"];
const CMODES: &[&str] = &["shell", "console", "tty"];
const ANY: Kind = Kind::Str { max_len: None };

/// Looks up an LXC config key; `None` for keys PVE does not define.
pub(crate) fn lxc_key(key: &str) -> Option<KeyDesc> {
    use Plug::*;
    let d = |kind, plug| Some(KeyDesc { kind, plug });
    match key {
        "arch" => d(Kind::Enum(ARCHES), Pending),
        "cmode" => d(Kind::Enum(CMODES), Pending),
        "console" | "debug" | "template" => d(Kind::Bool, Pending),
        "cores" => d(
            Kind::Int {
                min: 1,
                max: Some(8192),
            },
            Fast,
        ),
        "cpulimit" => d(
            Kind::Number {
                min: 0.0,
                max: 8192.0,
            },
            Hot,
        ),
        "cpuunits" => d(
            Kind::Int {
                min: 0,
                max: Some(500_000),
            },
            Hot,
        ),
        "description" => d(Kind::Description, Fast),
        "entrypoint" | "env" | "features" | "nameserver" | "rootfs" | "searchdomain"
        | "timezone" => d(ANY, Pending),
        "hookscript" | "startup" => d(ANY, Fast),
        "hostname" => d(Kind::DnsName, Fast),
        "lock" => d(Kind::Enum(LOCKS), Fast),
        "memory" => d(Kind::Int { min: 16, max: None }, Hot),
        "swap" => d(Kind::Int { min: 0, max: None }, Hot),
        "onboot" | "protection" => d(Kind::Bool, Fast),
        "ostype" => d(Kind::Enum(OSTYPES), Pending),
        "tags" => d(Kind::Tags, Fast),
        "tty" => d(
            Kind::Int {
                min: 0,
                max: Some(6),
            },
            Pending,
        ),
        "unprivileged" => d(Kind::Bool, ReadOnly),
        _ => indexed_key(key),
    }
}

fn indexed_key(key: &str) -> Option<KeyDesc> {
    let split = key.find(|c: char| c.is_ascii_digit())?;
    let (prefix, num) = key.split_at(split);
    if num.len() > 1 && num.starts_with('0') {
        return None;
    }
    let n: u32 = num.parse().ok()?;
    let plug = match prefix {
        "net" if n < 32 => Plug::Hot,
        "unused" if n < 256 => Plug::Hot,
        "mp" | "dev" if n < 256 => Plug::HotIfNew,
        _ => return None,
    };
    Some(KeyDesc { kind: ANY, plug })
}

fn is_integer(v: &str) -> bool {
    let digits = v.strip_prefix(['+', '-']).unwrap_or(v);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

fn is_number(v: &str) -> bool {
    let (mantissa, exp) = match v.find(['e', 'E']) {
        Some(i) => (&v[..i], Some(&v[i + 1..])),
        None => (v, None),
    };
    let m = mantissa.strip_prefix(['+', '-']).unwrap_or(mantissa);
    let (int, frac) = m.split_once('.').unwrap_or((m, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = digits(int) && digits(frac) && !(int.is_empty() && frac.is_empty());
    let exp_ok = exp.is_none_or(is_integer);
    mantissa_ok && exp_ok
}

/// Splits a list the way `PVE::Tools::split_list` does: on `\0` if there is one, else on
/// `,`, `;` and whitespace.
pub(crate) fn split_list(s: &str) -> Vec<String> {
    if s.contains('\0') {
        return s.split('\0').map(str::to_string).collect();
    }
    s.split(|c: char| c == ',' || c == ';' || c.is_whitespace())
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

fn is_tag(t: &str) -> bool {
    let mut bytes = t.bytes();
    let ok_first = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    bytes.next().is_some_and(ok_first)
        && bytes.all(|b| ok_first(b) || matches!(b, b'-' | b'+' | b'.'))
}

fn is_dns_name(s: &str) -> bool {
    let label = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
    };
    s.split('.').all(label)
}

fn is_config_id(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphabetic()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-')
}

/// Checks an input value; the error is the text PVE puts in `errors.<param>`.
pub(crate) fn check_value(kind: &Kind, v: &str) -> Result<(), String> {
    let max_len = |max: usize| {
        if v.chars().count() > max {
            Err(format!("value may only be {max} characters long"))
        } else {
            Ok(())
        }
    };
    match *kind {
        Kind::Int { min, max } => {
            if !is_integer(v) {
                return Err(format!("type check ('integer') failed - got '{v}'"));
            }
            let n: i128 = v.parse().unwrap_or(i128::MAX);
            check_range(n as f64, min as f64, max.map(|m| m as f64))
        }
        Kind::Number { min, max } => {
            if !is_number(v) {
                return Err(format!("type check ('number') failed - got '{v}'"));
            }
            check_range(v.parse().unwrap_or(f64::MAX), min, Some(max))
        }
        Kind::Bool => match v {
            "0" | "1" => Ok(()),
            _ => Err(format!("type check ('boolean') failed - got '{v}'")),
        },
        Kind::Str { max_len: Some(m) } => max_len(m),
        Kind::Str { max_len: None } => Ok(()),
        Kind::Enum(values) => {
            if values.contains(&v) {
                Ok(())
            } else {
                Err(format!(
                    "value '{v}' does not have a value in the enumeration '{}'",
                    values.join(", ")
                ))
            }
        }
        Kind::Tags => {
            if split_list(v).iter().all(|t| is_tag(t)) {
                Ok(())
            } else {
                Err("invalid format - invalid characters in tag\n".to_string())
            }
        }
        Kind::Description => max_len(8192),
        Kind::DnsName => {
            if !is_dns_name(v) {
                return Err("invalid format - value does not look like a valid DNS name\n".into());
            }
            max_len(255)
        }
        Kind::ConfigIdList => match split_list(v).into_iter().find(|id| !is_config_id(id)) {
            Some(id) => Err(format!(
                "invalid format - invalid configuration ID '{id}'\n"
            )),
            None => Ok(()),
        },
        // A property string: its error names the sub-key (pve-common `check_format`).
        Kind::Memory => {
            let current = memory_current(v);
            let sub = match current {
                Some(c) if is_integer(c) => {
                    check_range(c.parse::<f64>().unwrap_or(f64::MAX), 16.0, None)
                }
                Some(c) => Err(format!("type check ('integer') failed - got '{c}'")),
                None => Err("property is missing and it is not optional".to_string()),
            };
            sub.map_err(|e| format!("invalid format - format error\ncurrent: {e}\n"))
        }
        Kind::Hotplug => {
            const FEATURES: &[&str] = &["network", "disk", "cpu", "memory", "usb", "cloudinit"];
            if v == "0" || v == "1" {
                return Ok(());
            }
            match split_list(v)
                .into_iter()
                .find(|f| !FEATURES.contains(&f.as_str()))
            {
                Some(f) => Err(format!("invalid format - invalid hotplug feature '{f}'\n")),
                None => Ok(()),
            }
        }
    }
}

/// The `current` of a VM's memory property string (`2048`, `current=2048`), as text.
pub(crate) fn memory_current(v: &str) -> Option<&str> {
    v.split(',')
        .filter_map(|part| match part.split_once('=') {
            Some(("current", c)) => Some(c),
            Some(_) => None,
            None => Some(part),
        })
        .next_back()
}

fn check_range(n: f64, min: f64, max: Option<f64>) -> Result<(), String> {
    let show = |x: f64| format!("{x}");
    if let Some(max) = max.filter(|m| n > *m) {
        return Err(format!("value must have a maximum value of {}", show(max)));
    }
    if n < min {
        return Err(format!("value must have a minimum value of {}", show(min)));
    }
    Ok(())
}

/// The canonical config text of a checked input value (integers lose a `+` sign and
/// leading zeros, as Perl's `int()` does when the config is read back).
pub(crate) fn canonical(kind: &Kind, v: &str) -> String {
    match kind {
        Kind::Int { .. } => v.parse::<i64>().map(|n| n.to_string()).unwrap_or_default(),
        _ => v.to_string(),
    }
}

/// Tags as PVE stores them: lowercased, de-duplicated, sorted, `;`-joined.
pub(crate) fn normalize_tags(v: &str) -> String {
    let set: std::collections::BTreeSet<String> =
        split_list(v).iter().map(|t| t.to_lowercase()).collect();
    set.into_iter().collect::<Vec<_>>().join(";")
}

/// A description as PVE reads it back after writing it: split on `\n`, trailing empty
/// lines dropped, every line ending in `\n`. `None` when nothing is left.
pub(crate) fn stored_description(v: &str) -> Option<String> {
    let mut lines: Vec<&str> = v.split('\n').collect();
    while lines.last() == Some(&"") {
        lines.pop();
    }
    if lines.is_empty() {
        return None;
    }
    Some(lines.iter().map(|l| format!("{l}\n")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_read_back_like_pve() {
        assert_eq!(stored_description("hello").as_deref(), Some("hello\n"));
        assert_eq!(
            stored_description("a\n\nb\n\n").as_deref(),
            Some("a\n\nb\n")
        );
        assert_eq!(stored_description("\nx").as_deref(), Some("\nx\n"));
        assert_eq!(stored_description(""), None);
        assert_eq!(stored_description("\n\n"), None);
    }

    #[test]
    fn tags_are_normalised_and_checked() {
        assert_eq!(normalize_tags("Web,prod"), "prod;web");
        assert_eq!(normalize_tags("b;a a  c,B"), "a;b;c");
        assert_eq!(normalize_tags(""), "");
        assert!(check_value(&Kind::Tags, "prod;web-1;x.y+z;_a").is_ok());
        assert_eq!(
            check_value(&Kind::Tags, "ok,-bad").unwrap_err(),
            "invalid format - invalid characters in tag\n"
        );
        assert!(check_value(&Kind::Tags, "a/b").is_err());
    }

    #[test]
    fn split_list_like_perl() {
        assert_eq!(split_list("a, b;c  d"), ["a", "b", "c", "d"]);
        assert_eq!(split_list("a\0b c"), ["a", "b c"]);
        assert!(split_list(" ").is_empty());
    }

    #[test]
    fn value_checks_use_pve_wording() {
        let cores = lxc_key("cores").unwrap().kind;
        assert!(check_value(&cores, "4").is_ok());
        assert_eq!(
            check_value(&cores, "0").unwrap_err(),
            "value must have a minimum value of 1"
        );
        assert_eq!(
            check_value(&cores, "8193").unwrap_err(),
            "value must have a maximum value of 8192"
        );
        assert_eq!(
            check_value(&cores, "two").unwrap_err(),
            "type check ('integer') failed - got 'two'"
        );
        assert_eq!(
            check_value(&Kind::Bool, "true").unwrap_err(),
            "type check ('boolean') failed - got 'true'"
        );
        let mem = lxc_key("memory").unwrap().kind;
        assert!(check_value(&mem, "15").is_err());
        assert!(check_value(&mem, "16").is_ok());
        let cpulimit = lxc_key("cpulimit").unwrap().kind;
        assert!(check_value(&cpulimit, "0.5").is_ok());
        assert!(check_value(&cpulimit, ".5").is_ok());
        assert!(check_value(&cpulimit, "x").is_err());
        assert!(check_value(&Kind::DnsName, "web-1.example").is_ok());
        assert!(check_value(&Kind::DnsName, "-web").is_err());
        assert!(check_value(&Kind::ConfigIdList, "cores,swap;net0 mp1").is_ok());
        assert!(check_value(&Kind::ConfigIdList, "cores,9x").is_err());
        assert!(check_value(&lxc_key("lock").unwrap().kind, "backup").is_ok());
        assert!(check_value(&lxc_key("lock").unwrap().kind, "nope").is_err());
        assert_eq!(canonical(&cores, "+04"), "4");
        assert!(check_value(&Kind::Memory, "2048").is_ok());
        assert!(check_value(&Kind::Memory, "current=2048").is_ok());
        assert_eq!(
            check_value(&Kind::Memory, "15").unwrap_err(),
            "invalid format - format error\ncurrent: value must have a minimum value of 16\n"
        );
        assert_eq!(
            check_value(&Kind::Memory, "lots").unwrap_err(),
            "invalid format - format error\ncurrent: type check ('integer') failed - got 'lots'\n"
        );
        assert_eq!(memory_current("current=3072"), Some("3072"));
        assert!(check_value(&Kind::Hotplug, "1").is_ok());
        assert!(check_value(&Kind::Hotplug, "network,disk,cpu,memory").is_ok());
        assert_eq!(
            check_value(&Kind::Hotplug, "disk,ram").unwrap_err(),
            "invalid format - invalid hotplug feature 'ram'\n"
        );
    }

    #[test]
    fn key_table() {
        assert_eq!(lxc_key("cores").unwrap().plug, Plug::Fast);
        assert_eq!(lxc_key("memory").unwrap().plug, Plug::Hot);
        assert_eq!(lxc_key("nameserver").unwrap().plug, Plug::Pending);
        assert_eq!(lxc_key("net31").unwrap().plug, Plug::Hot);
        assert_eq!(lxc_key("mp3").unwrap().plug, Plug::HotIfNew);
        assert!(lxc_key("net32").is_none());
        assert!(lxc_key("net01").is_none());
        assert!(lxc_key("bogus").is_none());
    }
}
