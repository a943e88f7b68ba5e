//! Guest ids: PVE accepts 100 to 999999999, and older nodes send them as strings.

use std::fmt;
use std::str::FromStr;

/// A guest id, checked against PVE's range when parsed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Vmid(u32);

impl Vmid {
    pub const MIN: u32 = 100;
    pub const MAX: u32 = 999_999_999;

    /// A vmid from a number, if it is within PVE's range.
    pub fn new(n: u64) -> Option<Vmid> {
        (u64::from(Self::MIN)..=u64::from(Self::MAX))
            .contains(&n)
            .then_some(Vmid(n as u32))
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Vmid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for Vmid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for Vmid {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim()
            .parse::<u64>()
            .ok()
            .and_then(Vmid::new)
            .ok_or_else(|| format!("invalid vmid {s:?}: expected an integer from 100 to 999999999"))
    }
}

impl serde::Serialize for Vmid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Vmid {
    /// Accepts a JSON number or a string holding one (PVE before 8.2 sent strings).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Number(n) => n
                .as_u64()
                .and_then(Vmid::new)
                .ok_or_else(|| serde::de::Error::custom(format!("invalid vmid {n}"))),
            serde_json::Value::String(s) => s.parse().map_err(serde::de::Error::custom),
            other => Err(serde::de::Error::custom(format!(
                "invalid vmid {other}: expected a number"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_or_string() {
        let a: Vmid = serde_json::from_str("101").unwrap();
        let b: Vmid = serde_json::from_str("\"101\"").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.get(), 101);
        assert_eq!(serde_json::to_string(&a).unwrap(), "101");
    }

    #[test]
    fn range_is_checked() {
        assert!(serde_json::from_str::<Vmid>("99").is_err());
        assert!(serde_json::from_str::<Vmid>("1000000000").is_err());
        assert!(serde_json::from_str::<Vmid>("-1").is_err());
        assert!(serde_json::from_str::<Vmid>("true").is_err());
        assert!("abc".parse::<Vmid>().is_err());
    }
}
