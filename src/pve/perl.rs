//! Tolerant decoding of Perl-typed JSON: the one place that knows PVE numbers and
//! booleans may arrive as `1`, `"1"`, `true` or `"yes"`.
//!
//! Modelled on proxmox-rs `proxmox-serde/src/perl.rs`. Perl keeps scalars untyped, so
//! a field the schema calls an integer can come out as a JSON string (`vmid` before
//! PVE 8.2, `cpulimit`, QEMU `memory`), and booleans come out as `0`/`1`. Every typed
//! field in [`super::types`] goes through the functions here.
//!
//! The pure converters (`to_bool`, `to_u64`, ...) work on a [`serde_json::Value`]; the
//! `de_*` functions wrap them for `#[serde(deserialize_with = "...")]`. The `de_opt_*`
//! variants map an absent field or `null` to `None`; pair them with `#[serde(default)]`.

use serde::de::{Deserialize, Deserializer, Error as _};
use serde_json::Value;

/// A boolean from a number (`0` is false, anything else true), a JSON boolean, or one
/// of the strings `1 0 true false yes no on off` (case-insensitive).
pub fn to_bool(v: &Value) -> Result<bool, String> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::Number(n) => match n.as_f64() {
            Some(f) => Ok(f != 0.0),
            None => Err(format!("expected a boolean, got {n}")),
        },
        Value::String(s) => {
            let t = s.trim();
            let is = |w: &str| t.eq_ignore_ascii_case(w);
            if t == "1" || is("true") || is("yes") || is("on") {
                Ok(true)
            } else if t == "0" || is("false") || is("no") || is("off") {
                Ok(false)
            } else {
                Err(format!("expected a boolean, got {s:?}"))
            }
        }
        other => Err(format!("expected a boolean, got {other}")),
    }
}

/// A signed integer from a JSON number (an integral float is accepted) or a string
/// holding one.
pub fn to_i64(v: &Value) -> Result<i64, String> {
    let bad = || format!("expected an integer, got {v}");
    match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(i)
            } else {
                n.as_f64().and_then(integral_i64).ok_or_else(bad)
            }
        }
        Value::String(s) => {
            let t = s.trim();
            t.parse::<i64>()
                .ok()
                .or_else(|| t.parse::<f64>().ok().and_then(integral_i64))
                .ok_or_else(bad)
        }
        _ => Err(bad()),
    }
}

/// An unsigned integer from a JSON number or a string holding one.
pub fn to_u64(v: &Value) -> Result<u64, String> {
    let direct = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    direct
        .or_else(|| to_i64(v).ok().and_then(|i| u64::try_from(i).ok()))
        .ok_or_else(|| format!("expected an unsigned integer, got {v}"))
}

/// A `u32` from a JSON number or a string holding one.
pub fn to_u32(v: &Value) -> Result<u32, String> {
    let n = to_u64(v)?;
    u32::try_from(n).map_err(|_| format!("{n} is out of range for a 32-bit integer"))
}

/// A `u8` from a JSON number or a string holding one.
pub fn to_u8(v: &Value) -> Result<u8, String> {
    let n = to_u64(v)?;
    u8::try_from(n).map_err(|_| format!("{n} is out of range for an 8-bit integer"))
}

/// A float from a JSON number or a string holding one (`cpulimit` comes as `"0.5"`).
pub fn to_f64(v: &Value) -> Result<f64, String> {
    match v {
        Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| format!("expected a number, got {n}")),
        Value::String(s) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .ok_or_else(|| format!("expected a number, got {s:?}")),
        other => Err(format!("expected a number, got {other}")),
    }
}

/// A string from a JSON string, or the decimal text of a number (Perl does not
/// distinguish the two).
pub fn to_string(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(format!("expected a string, got {other}")),
    }
}

fn integral_i64(f: f64) -> Option<i64> {
    // The bounds keep the cast exact; PVE never sends integers near them.
    (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
}

fn required<'de, D, T>(d: D, conv: fn(&Value) -> Result<T, String>) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    let v = Value::deserialize(d)?;
    conv(&v).map_err(D::Error::custom)
}

fn optional<'de, D, T>(d: D, conv: fn(&Value) -> Result<T, String>) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
{
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(v) => conv(&v).map(Some).map_err(D::Error::custom),
    }
}

/// A boolean flag where absent or `null` means false (`template`). Use with `#[serde(default)]`.
pub fn de_flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(optional(d, to_bool)?.unwrap_or(false))
}

/// See [`to_bool`]; absent or `null` is `None`.
pub fn de_opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    optional(d, to_bool)
}

/// See [`to_i64`].
pub fn de_i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    required(d, to_i64)
}

/// See [`to_i64`]; absent or `null` is `None`.
pub fn de_opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    optional(d, to_i64)
}

/// See [`to_u64`]; absent or `null` is `None`.
pub fn de_opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    optional(d, to_u64)
}

/// See [`to_u32`]; absent or `null` is `None`.
pub fn de_opt_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    optional(d, to_u32)
}

/// See [`to_u8`]; absent or `null` is `None`.
pub fn de_opt_u8<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
    optional(d, to_u8)
}

/// See [`to_f64`]; absent or `null` is `None`.
pub fn de_opt_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    optional(d, to_f64)
}

/// See [`to_string`]; absent or `null` is `None`.
pub fn de_opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    optional(d, to_string)
}

/// See [`to_string`]; absent or `null` is the empty string. Use with `#[serde(default)]`.
pub fn de_string_or_empty<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(optional(d, to_string)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn booleans() {
        let table: &[(Value, Option<bool>)] = &[
            (json!(1), Some(true)),
            (json!(0), Some(false)),
            (json!(2), Some(true)),
            (json!(true), Some(true)),
            (json!(false), Some(false)),
            (json!("1"), Some(true)),
            (json!("0"), Some(false)),
            (json!("yes"), Some(true)),
            (json!("No"), Some(false)),
            (json!("on"), Some(true)),
            (json!("OFF"), Some(false)),
            (json!("true"), Some(true)),
            (json!("false"), Some(false)),
            (json!(" 1 "), Some(true)),
            (json!(""), None),
            (json!("maybe"), None),
            (json!(null), None),
            (json!([1]), None),
        ];
        for (v, want) in table {
            assert_eq!(to_bool(v).ok(), *want, "{v}");
        }
    }

    #[test]
    fn integers() {
        let table: &[(Value, Option<i64>)] = &[
            (json!(101), Some(101)),
            (json!("101"), Some(101)),
            (json!(" 7 "), Some(7)),
            (json!(-3), Some(-3)),
            (json!("-3"), Some(-3)),
            (json!(2.0), Some(2)),
            (json!("512.0"), Some(512)),
            (json!(2.5), None),
            (json!("2.5"), None),
            (json!("abc"), None),
            (json!(""), None),
            (json!(true), None),
            (json!(null), None),
        ];
        for (v, want) in table {
            assert_eq!(to_i64(v).ok(), *want, "{v}");
        }
        assert_eq!(to_u64(&json!(u64::MAX)).ok(), Some(u64::MAX));
        assert_eq!(to_u64(&json!("18446744073709551615")).ok(), Some(u64::MAX));
        assert_eq!(to_u64(&json!(-1)).ok(), None);
        assert_eq!(to_u64(&json!("1073741824")).ok(), Some(1 << 30));
        assert_eq!(to_u32(&json!("8192")).ok(), Some(8192));
        assert_eq!(to_u32(&json!(5_000_000_000u64)).ok(), None);
        assert_eq!(to_u8(&json!("2")).ok(), Some(2));
        assert_eq!(to_u8(&json!(256)).ok(), None);
    }

    #[test]
    fn floats() {
        let table: &[(Value, Option<f64>)] = &[
            (json!(0.5), Some(0.5)),
            (json!("0.5"), Some(0.5)),
            (json!(16), Some(16.0)),
            (json!("16"), Some(16.0)),
            (json!("nan"), None),
            (json!("inf"), None),
            (json!("x"), None),
            (json!(false), None),
        ];
        for (v, want) in table {
            assert_eq!(to_f64(v).ok(), *want, "{v}");
        }
    }

    #[test]
    fn strings() {
        assert_eq!(to_string(&json!("a")).ok(), Some("a".into()));
        assert_eq!(to_string(&json!(101)).ok(), Some("101".into()));
        assert!(to_string(&json!({})).is_err());
    }

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Fields {
        #[serde(default, deserialize_with = "de_flag")]
        flag: bool,
        #[serde(default, deserialize_with = "de_opt_bool")]
        opt_bool: Option<bool>,
        #[serde(deserialize_with = "de_i64")]
        int: i64,
        #[serde(default, deserialize_with = "de_opt_u64")]
        opt_u64: Option<u64>,
        #[serde(default, deserialize_with = "de_opt_f64")]
        opt_f64: Option<f64>,
        #[serde(default, deserialize_with = "de_opt_string")]
        opt_string: Option<String>,
        #[serde(default, deserialize_with = "de_string_or_empty")]
        string: String,
    }

    #[test]
    fn serde_adapters_handle_absent_null_and_strings() {
        let f: Fields = serde_json::from_str(r#"{"int":"5"}"#).unwrap();
        assert_eq!(
            f,
            Fields {
                flag: false,
                opt_bool: None,
                int: 5,
                opt_u64: None,
                opt_f64: None,
                opt_string: None,
                string: String::new(),
            }
        );
        let f: Fields = serde_json::from_str(
            r#"{"flag":"1","opt_bool":null,"int":5,"opt_u64":"6","opt_f64":"0.5",
                "opt_string":7,"string":null}"#,
        )
        .unwrap();
        assert!(f.flag);
        assert_eq!(f.opt_bool, None);
        assert_eq!(f.opt_u64, Some(6));
        assert_eq!(f.opt_f64, Some(0.5));
        assert_eq!(f.opt_string.as_deref(), Some("7"));
        let err = serde_json::from_str::<Fields>(r#"{"int":"five"}"#).unwrap_err();
        assert!(err.to_string().contains("expected an integer"), "{err}");
        assert!(serde_json::from_str::<Fields>(r#"{"flag":"maybe","int":1}"#).is_err());
    }
}
