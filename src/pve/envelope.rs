//! Decoding a 2xx answer's `{"data": ...}` envelope straight from the body's bytes into
//! the type the call asks for, with no [`Value`] of the whole answer in between: the
//! node's lists for a thousand guests are a few hundred KB of JSON and several times
//! that as a tree of `Value`s, which set the agent's peak memory.
//!
//! An answer that does not decode that way takes the slow road: parsed into a `Value`,
//! its `data` taken out and converted, exactly as the client always did. So every error
//! is what it was (its message, and whether the body was cut off,
//! [`ApiError::Truncated`], or does not decode, [`ApiError::Decode`]), and an answer the
//! direct road refuses for a reason the slow one does not (a `data` key given twice, say)
//! still decodes. The direct road accepts nothing the slow one refuses, except in
//! members the agent does not read, which it skips without converting them: a number
//! too large for an `f64` there, or nesting deeper than serde_json's limit of 128.

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
    // serde_json checks the UTF-8 only of strings it converts; the slow road checks
    // all of the body.
    if let Ok(text) = std::str::from_utf8(body) {
        if let Ok(Envelope(data)) = serde_json::from_str::<Envelope<T>>(text) {
            return Ok(data);
        }
    }
    slow(request, status, body)
}

/// The body as a [`Value`], then its `data` as a `T`: the client's decoding before
/// [`data`], kept for the errors it gives.
fn slow<T: DeserializeOwned>(request: &str, status: u16, body: &[u8]) -> Result<T, ApiError> {
    let decode = |detail: String| ApiError::Decode {
        request: request.to_string(),
        detail,
    };
    let mut v: Value = serde_json::from_slice(body).map_err(|e| {
        if e.is_eof() {
            // JSON that ends early was cut off, whatever the transfer framing said.
            ApiError::Truncated {
                request: request.to_string(),
                status,
                detail: format!("{} bytes, inside its JSON", body.len()),
            }
        } else {
            decode(e.to_string())
        }
    })?;
    let data = match v.get_mut("data") {
        Some(data) => data.take(),
        None => return Err(decode("no \"data\" in the response".into())),
    };
    serde_json::from_value(data).map_err(|e| decode(e.to_string()))
}

/// `{"data": T, ...}`: an object whose `data` is a `T`; its other members are skipped
/// unread. Anything else (no `data`, not an object) is an error, which sends the answer
/// down the slow road.
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

    /// What the direct road gives for `body`, if it reads it.
    fn direct<T: DeserializeOwned>(body: &[u8]) -> Option<T> {
        let text = std::str::from_utf8(body).ok()?;
        serde_json::from_str::<Envelope<T>>(text).ok().map(|e| e.0)
    }

    /// Checks [`data`] on `body` against the slow road: where the direct road reads the
    /// answer the slow one reads the same (but for a number out of range in a member
    /// that is skipped), and elsewhere [`data`] gives the slow road's result.
    fn check<T: DeserializeOwned + fmt::Debug>(body: &[u8]) {
        let slow = slow::<T>("GET /x", 200, body);
        let got = format!("{:?}", data::<T>("GET /x", 200, body));
        let text = String::from_utf8_lossy(body);
        match direct::<T>(body) {
            Some(value) => {
                let value = format!("{:?}", Ok::<T, ApiError>(value));
                assert_eq!(got, value, "{text}");
                match slow {
                    Ok(_) => assert_eq!(got, format!("{slow:?}"), "{text}"),
                    Err(e) => assert!(e.to_string().contains("number out of range"), "{text}: {e}"),
                }
            }
            None => assert_eq!(got, format!("{slow:?}"), "{text}"),
        }
    }

    #[test]
    fn the_direct_road_reads_what_the_slow_one_reads() {
        for body in [
            r#"{"data":[1,2]}"#,
            r#"{"total":3,"data":[1,2],"message":{"x":[null]}}"#,
            r#"{"data":[1],"data":[1,2]}"#,
            " {\"data\":[]} \n",
        ] {
            assert!(direct::<Vec<u32>>(body.as_bytes()).is_some(), "{body}");
            check::<Vec<u32>>(body.as_bytes());
        }
    }

    /// The answers the agent reads by the hundred take the direct road, not the slow
    /// one (which would read them too, at a cost in memory).
    #[test]
    fn real_answers_take_the_direct_road() {
        use crate::pve::resources::Resources;
        use crate::pve::{ClusterResource, TaskStatus, VmEntry};
        fn direct_and_same<T: DeserializeOwned + fmt::Debug>(body: &str) {
            assert!(direct::<T>(body.as_bytes()).is_some(), "{body}");
            check::<T>(body.as_bytes());
        }
        direct_and_same::<Vec<GuestEntry>>(
            r#"{"data":[{"vmid":101,"name":"web1","status":"running","cpus":2,"maxmem":1073741824,
               "maxswap":536870912,"uptime":3600,"tags":"prod;web","pid":"1234","netin":1.5e3},
              {"vmid":"102","status":"stopped","template":1,"lock":"backup","cpus":"0.5"}]}"#,
        );
        direct_and_same::<Vec<VmEntry>>(
            r#"{"data":[{"vmid":100,"name":"db","status":"running","qmpstatus":"paused",
               "cpus":4,"maxmem":"4294967296","lock":"backup","tags":"a"}]}"#,
        );
        direct_and_same::<Resources<ClusterResource>>(
            r#"{"data":[{"id":"lxc/101","vmid":"101","type":"lxc","node":"pve1",
               "status":"running","hastate":"started","maxcpu":2},{"id":"node/pve1","type":"node"},
               {"id":"qemu/100","vmid":100,"type":"qemu","node":"pve2","template":0}]}"#,
        );
        direct_and_same::<LxcConfig>(
            r#"{"data":{"cores":2,"memory":"1024","swap":512,"onboot":1,"hostname":"web1",
               "description":"front end\n","net0":"name=eth0,bridge=vmbr0","digest":"0f3c"}}"#,
        );
        direct_and_same::<TaskStatus>(
            r#"{"data":{"upid":"UPID:pve1:0001A2B3:0456789A:6650F1C2:vzstart:101:a@pve!t:",
               "status":"stopped","exitstatus":"OK","type":"vzstart","starttime":1716580802,
               "pid":1,"node":"pve1","user":"a@pve!t","id":"101"}}"#,
        );
    }

    #[test]
    fn what_the_direct_road_refuses_goes_the_slow_road() {
        let get = |body: &[u8]| data::<Vec<u32>>("GET /x", 200, body);
        // `data` twice, the first of the wrong type: the last one counts.
        assert_eq!(get(br#"{"data":"x","data":[7]}"#), Ok(vec![7]));
        let detail = |body: &[u8]| match get(body) {
            Err(ApiError::Decode { request, detail }) => {
                assert_eq!(request, "GET /x");
                detail
            }
            other => panic!("expected a decode error, got {other:?}"),
        };
        // The slow road's messages: no position for a value of the wrong shape, the
        // parser's own for a body that is not JSON, even in a member that is not read.
        assert_eq!(
            detail(br#"{"data":{"a":1}}"#),
            "invalid type: map, expected a sequence"
        );
        assert_eq!(detail(br#"{"nodata":1}"#), "no \"data\" in the response");
        assert_eq!(detail(br#"[{"data":[1]}]"#), "no \"data\" in the response");
        assert_eq!(
            detail(br#"{"data":[1]}x"#),
            "trailing characters at line 1 column 13"
        );
        assert_eq!(
            detail(b"{\"data\":[1],\"x\":\"\x01\"}"),
            "control character (\\u0000-\\u001F) found while parsing a string at line 1 column 18"
        );
        assert_eq!(
            detail(b"{\"data\":[1],\"x\":\"\xff\"}"),
            "invalid unicode code point at line 1 column 18"
        );
        // Cut off inside the JSON, even where what came is of the wrong type.
        for cut in [&br#"{"data":[1,"#[..], br#"{"data":{"a":"#, b""] {
            let e = get(cut).unwrap_err();
            assert!(e.is_truncated(), "{cut:?}: {e:?}");
        }
    }

    /// Seeded mutations of good answers, decoded as the types the client asks for.
    #[test]
    fn fuzz_both_roads_agree() {
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
        cases("envelope roads", |rng| {
            let (seed, check) = seeds[rng.below(seeds.len() as u64) as usize];
            check(&mutate(rng, seed.as_bytes()));
        });
    }
}
