//! Proxmox task ids (UPIDs): parsed once, printed canonically, serialized as their string.
//!
//! Grammar (docs/proxmox-api.md §7.1; pve-common `src/PVE/UPID.pm`, before 9.0.12 `src/PVE/Tools.pm`):
//! `UPID:<node>:<pid 8 hex>:<pstart 8-9 hex>:<starttime 8 hex>:<type>:<id>:<user>:`
//! with the trailing colon. Parsed by hand, no regex crate.

use std::fmt;
use std::str::FromStr;

/// A Proxmox task id.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Upid {
    pub node: String,
    pub pid: u32,
    pub pstart: u64,
    pub starttime: i64,
    /// The worker type, e.g. `vzstart`, `hastop`.
    pub kind: String,
    /// The worker id; the vmid for guest tasks, may be empty.
    pub id: String,
    /// User or full token id, e.g. `agent@pve!reconciler`.
    pub user: String,
}

/// Why a string is not a UPID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpidParseError {
    input: String,
    what: &'static str,
}

impl fmt::Display for UpidParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid UPID {:?}: {}", self.input, self.what)
    }
}

impl std::error::Error for UpidParseError {}

impl Upid {
    /// The vmid this task acts on, when its id is one.
    pub fn vmid(&self) -> Option<u32> {
        self.id.parse().ok()
    }

    /// The UPID percent-encoded for use as one path segment: every byte that is not
    /// ASCII alphanumeric is escaped, as Proxmox's own client does.
    pub fn to_path_segment(&self) -> String {
        percent_encode_segment(&self.to_string())
    }
}

/// Percent-encodes every byte that is not ASCII alphanumeric.
pub fn percent_encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn is_hex(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Type, id and user: no `:`, no whitespace, no `/`.
fn is_field(s: &str) -> bool {
    !s.bytes()
        .any(|b| b == b':' || b == b'/' || b.is_ascii_whitespace())
}

/// PVE's node name syntax (`pve-node`): `[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?`.
pub fn is_node_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

impl FromStr for Upid {
    type Err = UpidParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |what| UpidParseError {
            input: s.to_string(),
            what,
        };
        let rest = s
            .strip_prefix("UPID:")
            .ok_or_else(|| err("missing UPID: prefix"))?;
        let rest = rest
            .strip_suffix(':')
            .ok_or_else(|| err("missing trailing colon"))?;
        let parts: Vec<&str> = rest.split(':').collect();
        let [node, pid, pstart, starttime, kind, id, user] = parts[..] else {
            return Err(err("expected 7 colon-separated fields"));
        };
        if !is_node_name(node) {
            return Err(err("bad node name"));
        }
        if !is_hex(pid, 8, 8) {
            return Err(err("pid is not 8 hex digits"));
        }
        if !is_hex(pstart, 8, 9) {
            return Err(err("pstart is not 8 or 9 hex digits"));
        }
        if !is_hex(starttime, 8, 8) {
            return Err(err("starttime is not 8 hex digits"));
        }
        if kind.is_empty() || !is_field(kind) {
            return Err(err("bad task type"));
        }
        if !is_field(id) {
            return Err(err("bad task id"));
        }
        if user.is_empty() || !is_field(user) {
            return Err(err("bad user"));
        }
        let hex = |v: &str| u64::from_str_radix(v, 16).map_err(|_| err("bad hex"));
        Ok(Upid {
            node: node.to_string(),
            pid: hex(pid)? as u32,
            pstart: hex(pstart)?,
            starttime: hex(starttime)? as i64,
            kind: kind.to_string(),
            id: id.to_string(),
            user: user.to_string(),
        })
    }
}

impl fmt::Display for Upid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "UPID:{}:{:08X}:{:08X}:{:08X}:{}:{}:{}:",
            self.node, self.pid, self.pstart, self.starttime, self.kind, self.id, self.user
        )
    }
}

impl fmt::Debug for Upid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Upid({self})")
    }
}

impl serde::Serialize for Upid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Upid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let u: Upid = "UPID:pve1:00010D94:001CA6EA:6124E1B9:vzdump:100:root@pam:"
            .parse()
            .unwrap();
        assert_eq!(u.node, "pve1");
        assert_eq!(u.pid, 69012);
        assert_eq!(u.pstart, 1877738);
        assert_eq!(u.starttime, 1629807033);
        assert_eq!(u.kind, "vzdump");
        assert_eq!(u.vmid(), Some(100));
        assert_eq!(u.user, "root@pam");
    }

    #[test]
    fn round_trips_canonically() {
        for s in [
            "UPID:pve1:00010D94:001CA6EA:6124E1B9:vzdump:100:root@pam:",
            "UPID:example-node:000934AF:0D015579:68BF3A41:vzdump:100:91a1da29-a47d-11f0-84e0-fafbfc944d00@pam!some-token:",
            "UPID:n:0001A2B3:10456789A:6650F1C2:vzstart:101:agent@pve!reconciler:",
            "UPID:pve1:0001A2B3:0456789A:6650F1C2:srvreload::root@pam:",
        ] {
            let u: Upid = s.parse().unwrap();
            assert_eq!(u.to_string(), s);
            let json = serde_json::to_string(&u).unwrap();
            assert_eq!(json, format!("\"{s}\""));
            let back: Upid = serde_json::from_str(&json).unwrap();
            assert_eq!(back, u);
        }
    }

    #[test]
    fn lowercase_hex_prints_uppercase() {
        let u: Upid = "UPID:pve1:0001a2b3:0456789a:6650f1c2:vzstart:101:root@pam:"
            .parse()
            .unwrap();
        assert_eq!(
            u.to_string(),
            "UPID:pve1:0001A2B3:0456789A:6650F1C2:vzstart:101:root@pam:"
        );
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "",
            "UPID:pve1:00010D94:001CA6EA:6124E1B9:vzdump:100:root@pam",
            "UPID:pve1:0010D94:001CA6EA:6124E1B9:vzdump:100:root@pam:",
            "UPID:pve1:00010D94:01CA6EA:6124E1B9:vzdump:100:root@pam:",
            "UPID:pve1:00010D94:001CA6EA:6124E1B9::100:root@pam:",
            "UPID:-pve:00010D94:001CA6EA:6124E1B9:vzdump:100:root@pam:",
            "UPID:pve1:00010D94:001CA6EA:6124E1B9:vz dump:100:root@pam:",
            "UPID:pve1:00010D94:001CA6EA:6124E1B9:vzdump:1/0:root@pam:",
            "UPID:pve1:00010D94:001CA6EA:6124E1B9:vzdump:100::",
            "UPID:pve1:00010D94:001CA6EA:6124E1B9:vzdump:100:root@pam:extra:",
            "UPID:pve1:0001XD94:001CA6EA:6124E1B9:vzdump:100:root@pam:",
        ] {
            assert!(s.parse::<Upid>().is_err(), "{s:?} should not parse");
        }
    }

    #[test]
    fn path_segment_escapes_everything_but_alphanumerics() {
        let u: Upid = "UPID:pve1:0001A2B3:0456789A:6650F1C2:vzstart:101:agent@pve!rec:"
            .parse()
            .unwrap();
        assert_eq!(
            u.to_path_segment(),
            "UPID%3Apve1%3A0001A2B3%3A0456789A%3A6650F1C2%3Avzstart%3A101%3Aagent%40pve%21rec%3A"
        );
    }

    /// A random UPID the grammar allows (upper-case hex, as printed).
    fn random_upid(rng: &mut crate::rng::XorShift) -> Upid {
        const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        const FIELD: &[u8] = b"abcxyz019@!.-_=+%ABC";
        fn pick(rng: &mut crate::rng::XorShift, set: &[u8], len: u64) -> String {
            (0..len)
                .map(|_| set[rng.below(set.len() as u64) as usize] as char)
                .collect()
        }
        let (a, b) = (1 + rng.below(3), rng.below(4));
        let node = pick(rng, ALNUM, a) + &pick(rng, b"ab-1", b) + &pick(rng, ALNUM, 1);
        let (k, i, u) = (1 + rng.below(10), rng.below(6), 1 + rng.below(20));
        Upid {
            node,
            pid: rng.next_u64() as u32,
            pstart: rng.below(1 << 36),
            starttime: rng.below(1 << 32) as i64,
            kind: pick(rng, FIELD, k),
            id: pick(rng, FIELD, i),
            user: pick(rng, FIELD, u),
        }
    }

    #[test]
    fn fuzz_upid_round_trips() {
        crate::fuzz::cases("upid round trip", |rng| {
            let u = random_upid(rng);
            let text = u.to_string();
            assert_eq!(text.parse::<Upid>().as_ref(), Ok(&u), "{text}");
        });
    }

    #[test]
    fn fuzz_upid_parse_never_panics() {
        let valid = [
            "UPID:pve1:00010D94:001CA6EA:6124E1B9:vzdump:100:root@pam:",
            "UPID:n:0001A2B3:10456789A:6650F1C2:vzstart:101:agent@pve!reconciler:",
            "UPID:pve1:0001A2B3:0456789A:6650F1C2:srvreload::root@pam:",
        ];
        crate::fuzz::cases("upid parse", |rng| {
            let seed = valid[rng.below(valid.len() as u64) as usize];
            let bytes = crate::fuzz::mutate(rng, seed.as_bytes());
            let text = String::from_utf8_lossy(&bytes);
            if let Ok(u) = text.parse::<Upid>() {
                // Whatever parses prints canonically and parses back to itself.
                let printed = u.to_string();
                assert_eq!(printed.parse::<Upid>().as_ref(), Ok(&u), "{text:?}");
                let _ = u.to_path_segment();
                let json = serde_json::to_string(&u).unwrap();
                assert_eq!(serde_json::from_str::<Upid>(&json).ok(), Some(u));
            }
        });
    }
}
