//! Decoding a 2xx answer's `{"data": ...}` envelope straight from the body's bytes into
//! the type the call asks for, with no [`Value`] of the whole answer in between: the
//! node's lists for a thousand guests are a few hundred KB of JSON and several times
//! that as a tree of `Value`s, which set the agent's peak memory. Members other than
//! `data` are skipped unread.
//!
//! Only an answer that does not decode is parsed again, into a `Value`, and only to say
//! why: cut off inside its JSON ([`ApiError::Truncated`], whatever the transfer framing
//! said), not JSON at all (the parser's message), no `data` member, or a `data` of the
//! wrong shape (the decoder's message, with its position). That second parse is not
//! generic: the binary carries the decoding of each answer type once (a generic road
//! through `Value` as well cost 78 KB of the node binary's 3 MiB budget).

use super::error::ApiError;
use serde::de::{self, DeserializeOwned, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;
use std::fmt;
use std::marker::PhantomData;

/// The `data` of a 2xx answer's body as a `T`. `request` (`GET /nodes/pve1/lxc`) and
/// `status` go into an error.
pub(crate) fn data<T: DeserializeOwned>(
    request: &str,
    status: u16,
    body: &[u8],
) -> Result<T, ApiError> {
    serde_json::from_slice::<Envelope<T>>(body)
        .map(|Envelope(data)| data)
        .map_err(|e| explain(request, status, body, e.to_string()))
}

/// Why an answer does not decode; `direct` is the decoder's own message.
fn explain(request: &str, status: u16, body: &[u8], direct: String) -> ApiError {
    let decode = |detail: String| ApiError::Decode {
        request: request.to_string(),
        detail,
    };
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) if e.is_eof() => {
            return ApiError::Truncated {
                request: request.to_string(),
                status,
                detail: format!("{} bytes, inside its JSON", body.len()),
            }
        }
        Err(e) => return decode(e.to_string()),
    };
    if v.get("data").is_none() {
        return decode("no \"data\" in the response".into());
    }
    decode(direct)
}

/// `{"data": T, ...}`: an object whose `data` is a `T`; its other members are skipped
/// unread. Anything else (no `data`, not an object) is an error, which [`explain`]
/// says.
struct Envelope<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Envelope<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(EnvelopeVisitor(PhantomData))
    }
}

struct EnvelopeVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for EnvelopeVisitor<T> {
    type Value = Envelope<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with \"data\"")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope<T>, A::Error> {
        let mut data = None;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                // Given twice, the last one counts, as in a `Value`.
                Key::Data => data = Some(map.next_value::<T>()?),
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        data.map(Envelope)
            .ok_or_else(|| de::Error::missing_field("data"))
    }
}

/// A member name of the envelope: `data`, or one that is skipped.
enum Key {
    Data,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_identifier(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
        Ok(if v == "data" { Key::Data } else { Key::Other })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz::{cases, mutate};
    use crate::pve::{GuestEntry, LxcConfig, Upid};

    /// What the client has always read, the slow way: the body as a `Value`, its
    /// `data` converted. [`data`] must read the same wherever this one reads anything
    /// (but for a number out of range in a member that is skipped).
    fn through_value<T: DeserializeOwned>(body: &[u8]) -> Option<T> {
        let mut v: Value = serde_json::from_slice(body).ok()?;
        serde_json::from_value(v.get_mut("data")?.take()).ok()
    }

    fn check<T: DeserializeOwned + fmt::Debug>(body: &[u8]) {
        let got = data::<T>("GET /x", 200, body);
        let text = String::from_utf8_lossy(body);
        if let Some(value) = through_value::<T>(body) {
            // `data` given twice: the slow way took the last; never in a PVE answer.
            if text.matches("\"data\"").count() < 2 {
                assert_eq!(
                    format!("{got:?}"),
                    format!("{:?}", Ok::<T, ApiError>(value)),
                    "{text}"
                );
            }
        }
        if let Err(e) = &got {
            assert!(
                matches!(e, ApiError::Decode { .. } | ApiError::Truncated { .. }),
                "{text}: {e:?}"
            );
        }
    }

    #[test]
    fn reads_data_and_skips_the_rest() {
        for body in [
            r#"{"data":[1,2]}"#,
            r#"{"total":3,"data":[1,2],"message":{"x":[null]}}"#,
            " {\"data\":[1,2]} \n",
        ] {
            assert_eq!(
                data::<Vec<u32>>("GET /x", 200, body.as_bytes()),
                Ok(vec![1, 2])
            );
        }
    }

    /// The answers the agent reads by the hundred.
    #[test]
    fn real_answers_decode_as_through_a_value() {
        use crate::pve::resources::Resources;
        use crate::pve::{ClusterResource, TaskStatus, VmEntry};
        fn same<T: DeserializeOwned + fmt::Debug>(body: &str) {
            assert!(data::<T>("GET /x", 200, body.as_bytes()).is_ok(), "{body}");
            check::<T>(body.as_bytes());
        }
        same::<Vec<GuestEntry>>(
            r#"{"data":[{"vmid":101,"name":"web1","status":"running","cpus":2,"maxmem":1073741824,
               "maxswap":536870912,"uptime":3600,"tags":"prod;web","pid":"1234","netin":1.5e3},
              {"vmid":"102","status":"stopped","template":1,"lock":"backup","cpus":"0.5"}]}"#,
        );
        same::<Vec<VmEntry>>(
            r#"{"data":[{"vmid":100,"name":"db","status":"running","qmpstatus":"paused",
               "cpus":4,"maxmem":"4294967296","lock":"backup","tags":"a"}]}"#,
        );
        same::<Resources<ClusterResource>>(
            r#"{"data":[{"id":"lxc/101","vmid":"101","type":"lxc","node":"pve1",
               "status":"running","hastate":"started","maxcpu":2},{"id":"node/pve1","type":"node"},
               {"id":"qemu/100","vmid":100,"type":"qemu","node":"pve2","template":0}]}"#,
        );
        same::<LxcConfig>(
            r#"{"data":{"cores":2,"memory":"1024","swap":512,"onboot":1,"hostname":"web1",
               "description":"front end\n","net0":"name=eth0,bridge=vmbr0","digest":"0f3c"}}"#,
        );
        same::<TaskStatus>(
            r#"{"data":{"upid":"UPID:pve1:0001A2B3:0456789A:6650F1C2:vzstart:101:a@pve!t:",
               "status":"stopped","exitstatus":"OK","type":"vzstart","starttime":1716580802,
               "pid":1,"node":"pve1","user":"a@pve!t","id":"101"}}"#,
        );
    }

    #[test]
    fn an_answer_that_does_not_decode_says_why() {
        let get = |body: &[u8]| data::<Vec<u32>>("GET /x", 200, body);
        let detail = |body: &[u8]| match get(body) {
            Err(ApiError::Decode { request, detail }) => {
                assert_eq!(request, "GET /x");
                detail
            }
            other => panic!("expected a decode error, got {other:?}"),
        };
        assert_eq!(
            detail(br#"{"data":{"a":1}}"#),
            "invalid type: map, expected a sequence at line 1 column 8"
        );
        assert_eq!(detail(br#"{"nodata":1}"#), "no \"data\" in the response");
        assert_eq!(detail(br#"[{"data":[1]}]"#), "no \"data\" in the response");
        assert_eq!(
            detail(br#"{"data":[1]}x"#),
            "trailing characters at line 1 column 13"
        );
        // The parser's own message for a body that is not JSON (a member that is not
        // read is skipped: its strings' UTF-8 is not checked).
        assert_eq!(
            detail(b"{\"data\":[\"\x01\"]}"),
            "control character (\\u0000-\\u001F) found while parsing a string at line 1 column 11"
        );
        assert_eq!(
            detail(b"{\"data\":[\"\xff\"]}"),
            "invalid unicode code point at line 1 column 11"
        );
        assert_eq!(
            detail(b"{\"data\":[1],\"x\":\"\x01\"}"),
            "control character (\\u0000-\\u001F) found while parsing a string at line 1 column 18"
        );
        assert_eq!(get(b"{\"data\":[1],\"x\":\"\xff\"}"), Ok(vec![1]));
        // Cut off inside the JSON, even where what came is of the wrong type.
        for cut in [&br#"{"data":[1,"#[..], br#"{"data":{"a":"#, b""] {
            let e = get(cut).unwrap_err();
            assert!(e.is_truncated(), "{cut:?}: {e:?}");
        }
    }

    /// Seeded mutations of good answers, decoded as the types the client asks for.
    #[test]
    fn fuzz_decodes_as_through_a_value() {
        type Check = fn(&[u8]);
        let seeds: [(&str, Check); 4] = [
            (
                r#"{"data":[{"vmid":101,"name":"a","status":"running","tags":"x;y","cpus":"2"},
                   {"vmid":"102","status":"stopped","template":1}],"total":2}"#,
                check::<Vec<GuestEntry>>,
            ),
            (
                r#"{"data":{"digest":"0f3c","cores":2,"memory":"512","onboot":"1",
                   "net0":"name=eth0","x":[1,{"y":null}]}}"#,
                check::<LxcConfig>,
            ),
            (
                r#"{"data":"UPID:pve1:0001A2B3:0456789A:6650F1C2:vzstart:101:agent@pve!t:"}"#,
                check::<Upid>,
            ),
            (
                r#"{"data":{"a":[1,2.5,"x",true,null],"b":{"c":-3}},"errors":{}}"#,
                check::<Value>,
            ),
        ];
        cases("envelope", |rng| {
            let (seed, check) = seeds[rng.below(seeds.len() as u64) as usize];
            check(&mutate(rng, seed.as_bytes()));
        });
    }
}
