//! PVE's `startup` property of a guest: `[order=]N,up=N,down=N`, all optional. The node's
//! own start-all starts guests by ascending `order` (absent after every ordered one),
//! waits `up` seconds after a guest, and its stop-all stops them in the reverse order
//! with `down` as the shutdown timeout (docs/proxmox-api.md §5.6; pve-common
//! `PVE/JSONSchema.pm` `pve_parse_startup_order`).

/// A parsed `startup` property.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Startup {
    pub order: Option<u64>,
    /// Seconds to wait after starting this guest before the next order begins.
    pub up: Option<u64>,
    /// The shutdown timeout, in seconds, for this guest; 0 means unset.
    pub down: Option<u64>,
}

impl Startup {
    /// Parses the property as PVE does: comma-separated, no spaces, a bare number is the
    /// order. `None` for anything PVE would refuse.
    pub fn parse(s: &str) -> Option<Startup> {
        let mut out = Startup::default();
        for part in s.split(',') {
            let (key, value) = match part.split_once('=') {
                Some((k, v)) => (k, v),
                None => ("order", part),
            };
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let n: u64 = value.parse().ok()?;
            let slot = match key {
                "order" => &mut out.order,
                "up" => &mut out.up,
                "down" => &mut out.down,
                _ => return None,
            };
            if slot.replace(n).is_some() {
                return None;
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_as_pve_does() {
        let s = |order, up, down| Some(Startup { order, up, down });
        assert_eq!(
            Startup::parse("order=1,up=30,down=60"),
            s(Some(1), Some(30), Some(60))
        );
        assert_eq!(Startup::parse("2"), s(Some(2), None, None));
        assert_eq!(Startup::parse("up=5"), s(None, Some(5), None));
        for bad in [
            "",
            "order=1, up=30",
            "order=-1",
            "order=1,order=2",
            "speed=3",
            "up=",
        ] {
            assert_eq!(Startup::parse(bad), None, "{bad:?}");
        }
    }
}
