//! The simulated node's own UPIDs (task ids), written and read the way pve-common does
//! (`src/PVE/UPID.pm` `encode`/`decode`; `PVE::Tools::upid_encode` in older releases).
//!
//! The simulator does not borrow the agent's parser on purpose: a bug there must not pass
//! on both sides of the wire.
//!
//! Format: `UPID:$node:$pid:$pstart:$starttime:$type:$id:$user:`, numbers in upper-case
//! hex, `pid` and `starttime` 8 digits, `pstart` 8 (9 after a long uptime). Decoding
//! accepts either case of hex digits, as the Perl regex does.

use std::fmt;

/// One UPID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SimUpid {
    pub node: String,
    pub pid: u32,
    /// The worker's process start, in clock ticks since boot.
    pub pstart: u64,
    /// Unix seconds.
    pub starttime: i64,
    /// The worker type (`vzstart`, `hastop`, ...).
    pub kind: String,
    /// The worker id: the vmid for guest tasks.
    pub id: String,
    /// The user or token that started the task.
    pub user: String,
}

impl fmt::Display for SimUpid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "UPID:{}:{:08X}:{:08X}:{:08X}:{}:{}:{}:",
            self.node, self.pid, self.pstart, self.starttime, self.kind, self.id, self.user
        )
    }
}

fn hex_field(s: &str, min: usize, max: usize) -> Option<u64> {
    let ok = (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit());
    ok.then(|| u64::from_str_radix(s, 16).ok()).flatten()
}

/// `[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?`
fn node_ok(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// `[^:\s/]*` (the id may be empty, type and user may not).
fn word_ok(s: &str, may_be_empty: bool) -> bool {
    (may_be_empty || !s.is_empty()) && !s.contains(|c: char| c == '/' || c.is_whitespace())
}

impl SimUpid {
    /// Parses a UPID, or `None` where pve-common's `decode` would die with `unable to
    /// parse worker upid`.
    pub(crate) fn parse(s: &str) -> Option<SimUpid> {
        let rest = s.strip_prefix("UPID:")?.strip_suffix(':')?;
        let f: Vec<&str> = rest.split(':').collect();
        let [node, pid, pstart, starttime, kind, id, user] = f.as_slice() else {
            return None;
        };
        if !node_ok(node) || !word_ok(kind, false) || !word_ok(id, true) || !word_ok(user, false) {
            return None;
        }
        Some(SimUpid {
            node: node.to_string(),
            pid: u32::try_from(hex_field(pid, 8, 8)?).ok()?,
            pstart: hex_field(pstart, 8, 9)?,
            starttime: i64::try_from(hex_field(starttime, 8, 8)?).ok()?,
            kind: kind.to_string(),
            id: id.to_string(),
            user: user.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SimUpid {
        SimUpid {
            node: "pve1".into(),
            pid: 0x1a2b,
            pstart: 0x0100_00ff,
            starttime: 0x6500_0000,
            kind: "vzstart".into(),
            id: "101".into(),
            user: "agent@pve!reconciler".into(),
        }
    }

    #[test]
    fn encodes_like_pve_common() {
        assert_eq!(
            sample().to_string(),
            "UPID:pve1:00001A2B:010000FF:65000000:vzstart:101:agent@pve!reconciler:"
        );
        let long = SimUpid {
            pstart: 0x1_0000_0000,
            ..sample()
        };
        assert!(long.to_string().contains(":100000000:"));
    }

    #[test]
    fn decodes_what_pve_common_accepts_and_nothing_else() {
        let text = sample().to_string();
        assert_eq!(SimUpid::parse(&text), Some(sample()));
        let lower = "UPID:pve1:00001a2b:010000ff:65000000:vzstart:101:agent@pve!reconciler:";
        assert_eq!(SimUpid::parse(lower), Some(sample()));
        let empty_id = "UPID:n-1:00000001:00000002:00000003:vzdump::root@pam:";
        assert_eq!(SimUpid::parse(empty_id).unwrap().id, "");
        let nine = "UPID:pve1:00000001:100000000:00000003:vzstart:101:root@pam:";
        assert_eq!(SimUpid::parse(nine).unwrap().pstart, 0x1_0000_0000);
        for bad in [
            "",
            "UPID:pve1:00000001:00000002:00000003:vzstart:101:root@pam",
            "UPID:pve1:0001:00000002:00000003:vzstart:101:root@pam:",
            "UPID:pve1:00000001:1000000000:00000003:vzstart:101:root@pam:",
            "UPID:pve1:0000000g:00000002:00000003:vzstart:101:root@pam:",
            "UPID:-pve:00000001:00000002:00000003:vzstart:101:root@pam:",
            "UPID:pve1:00000001:00000002:00000003::101:root@pam:",
            "UPID:pve1:00000001:00000002:00000003:vzstart:101::",
            "UPID:pve1:00000001:00000002:00000003:vz start:101:root@pam:",
            "UPID:pve1:00000001:00000002:00000003:vzstart:1/1:root@pam:",
            "UPID:pve1:00000001:00000002:00000003:vzstart:101:root@pam:x:",
            "upid:pve1:00000001:00000002:00000003:vzstart:101:root@pam:",
        ] {
            assert_eq!(SimUpid::parse(bad), None, "{bad:?}");
        }
    }
}
