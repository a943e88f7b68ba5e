//! A decoded line that borrows from the file's bytes, so that replaying a large
//! journal allocates only for what the index keeps (the params of ops in flight,
//! the UPIDs of running tasks), not for every string of every record.

use super::{OpId, OpState, Record};
use crate::action::{ActionKind, Params};
use crate::pve::{Upid, Vmid};
use serde::de::{Deserializer, MapAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// One record's members, strings borrowed where the JSON had no escapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct View<'a> {
    pub(crate) seq: u64,
    pub(crate) op: OpId,
    pub(crate) vmid: Vmid,
    pub(crate) kind: ActionKind,
    pub(crate) state: OpState,
    pub(crate) params: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    pub(crate) key: Option<Cow<'a, str>>,
    /// Not parsed yet: see [`View::upid`].
    pub(crate) upid: Option<Cow<'a, str>>,
    pub(crate) error: Option<Cow<'a, str>>,
    pub(crate) ts: Cow<'a, str>,
    /// `ts` in Unix seconds, if the decoder has parsed it already: see
    /// [`View::unix_ts`].
    pub(crate) unix_ts: Option<i64>,
}

impl<'a> View<'a> {
    /// A view of an owned record (for the writer, which applies what it wrote).
    pub(crate) fn of(rec: &'a Record) -> View<'a> {
        View {
            seq: rec.seq,
            op: rec.op,
            vmid: rec.vmid,
            kind: rec.kind,
            state: rec.state,
            params: rec
                .params
                .iter()
                .map(|(k, v)| (Cow::Borrowed(k.as_str()), Cow::Borrowed(v.as_str())))
                .collect(),
            key: rec.key.as_deref().map(Cow::Borrowed),
            upid: rec.upid.as_ref().map(|u| Cow::Owned(u.to_string())),
            error: rec.error.as_deref().map(Cow::Borrowed),
            ts: Cow::Borrowed(&rec.ts),
            unix_ts: None,
        }
    }

    pub(crate) fn params(&self) -> Params {
        self.params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The UPID, parsed.
    pub(crate) fn upid(&self) -> Result<Option<Upid>, String> {
        self.upid
            .as_deref()
            .map(|u| u.parse::<Upid>().map_err(|e| e.to_string()))
            .transpose()
    }

    /// Unix seconds of `ts` (checked when the line was decoded, which kept what it
    /// parsed: replay asks this of every `started` record).
    pub(crate) fn unix_ts(&self) -> i64 {
        self.unix_ts
            .or_else(|| crate::time::parse_rfc3339(&self.ts))
            .unwrap_or(0)
    }

    /// The owned record, with its UPID parsed.
    pub(crate) fn to_record(&self) -> Result<Record, String> {
        Ok(Record {
            v: super::version_for(self.key.is_some()),
            seq: self.seq,
            op: self.op,
            vmid: self.vmid,
            kind: self.kind,
            params: self.params(),
            key: self.key.as_ref().map(|k| k.to_string()),
            state: self.state,
            upid: self.upid()?,
            error: self.error.as_ref().map(|e| e.to_string()),
            ts: self.ts.to_string(),
        })
    }
}

/// A JSON string, borrowed from the input unless it had escapes.
pub(crate) struct Str<'a>(pub(crate) Cow<'a, str>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }

            fn visit_str<E>(self, v: &str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v.to_string())))
            }

            fn visit_string<E>(self, v: String) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// An object of strings, in file order, strings borrowed as with [`Str`].
pub(crate) struct StrMap<'a>(pub(crate) Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for StrMap<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrMap<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of strings")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StrMap<'de>, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<Str<'de>, Str<'de>>()? {
                    out.push((k.0, v.0));
                }
                Ok(StrMap(out))
            }
        }
        d.deserialize_map(V)
    }
}
