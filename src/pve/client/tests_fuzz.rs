//! Malformed Proxmox answers: every typed endpoint's decoding, from the raw body on,
//! gives a value or a typed error, never a panic. A table of known-bad answers first,
//! then seeded mutations of good ones (`crate::fuzz`).

use super::power::{power_task, PowerCall};
use super::*;
use crate::fuzz::{cases, mutate};
use crate::pve::transport::{interpret, Answer};
use crate::rng::XorShift;

const UPID: &str = "UPID:pve1:0001A2B3:0456789A:6650F1C2:vzstart:101:agent@pve!reconciler:";

type Decoder = fn(&str, &Answer<'_>) -> Result<(), ApiError>;

/// The answer's `data` as a `T`, as the client's `get` reads it.
fn typed<T: DeserializeOwned>(request: &str, a: &Answer<'_>) -> Result<(), ApiError> {
    interpret::<T>(request, a).map(drop)
}

/// Each endpoint: its request label, a good body, and the decoding its method does
/// from the answer ([`interpret`] and what follows it).
fn endpoints() -> Vec<(&'static str, String, Decoder)> {
    vec![
        (
            "GET /version",
            r#"{"data":{"version":"8.2.4","release":"8.2","repoid":"faa83925"}}"#.into(),
            typed::<Version>,
        ),
        (
            "GET /nodes/pve1/lxc",
            r#"{"data":[{"vmid":101,"name":"web1","status":"running","cpus":2,
               "maxmem":1073741824,"maxswap":536870912,"uptime":3600,"tags":"prod;web"},
              {"vmid":"102","status":"stopped","template":1,"lock":"backup","cpus":"0.5"}]}"#
                .into(),
            typed::<Vec<GuestEntry>>,
        ),
        (
            "GET /nodes/pve1/lxc/101/config",
            r#"{"data":{"cores":2,"memory":"1024","swap":512,"onboot":1,"hostname":"web1",
               "description":"front end\n","tags":"prod;web","net0":"name=eth0,bridge=vmbr0",
               "digest":"0f3c1b0e6f8a3a2d9b7c5e4f1a2b3c4d5e6f7a8b"}}"#
                .into(),
            typed::<LxcConfig>,
        ),
        (
            "GET /nodes/pve1/lxc/101/status/current",
            r#"{"data":{"vmid":"101","status":"running","name":"web1","template":0,
               "ha":{"managed":1,"state":"started"},"lock":"backup"}}"#
                .into(),
            |r, a| {
                let raw: RawGuestStatus = interpret(r, a)?;
                raw.into_status(Vmid::new(101).unwrap());
                Ok(())
            },
        ),
        (
            "GET /nodes/pve1/lxc/101/pending",
            r#"{"data":[{"key":"memory","value":512,"pending":1024},
               {"key":"swap","value":512,"delete":"1"},{"key":"hostname","value":"web1"}]}"#
                .into(),
            |r, a| {
                let list: Vec<PendingEntry> = interpret(r, a)?;
                list.iter()
                    .for_each(|p| assert!(p.is_pending() || p.pending.is_none()));
                Ok(())
            },
        ),
        (
            "GET /cluster/resources",
            r#"{"data":[{"id":"lxc/101","vmid":"101","type":"lxc","node":"pve1",
               "status":"running","hastate":"started"},{"id":"node/pve1","type":"node"},
               {"id":"qemu/100","vmid":100,"type":"qemu","node":"pve2","template":0}]}"#
                .into(),
            typed::<Resources<ClusterResource>>,
        ),
        (
            "GET /nodes/pve1/tasks",
            format!(
                r#"{{"data":[{{"upid":"{UPID}","type":"vzstart","id":"101",
                   "starttime":1716580802,"endtime":"1716580803","status":"OK"}}]}}"#
            ),
            typed::<Vec<TaskListEntry>>,
        ),
        (
            "GET /nodes/pve1/tasks/UPID/status",
            format!(
                r#"{{"data":{{"upid":"{UPID}","status":"stopped","exitstatus":"WARNINGS: 2",
                   "type":"vzstart","starttime":1716580802,"pid":1}}}}"#
            ),
            |r, a| {
                let status: TaskStatus = interpret(r, a)?;
                if let Some(outcome) = status.outcome() {
                    drop(outcome.failure());
                }
                Ok(())
            },
        ),
        (
            "POST /nodes/pve1/lxc/101/status/start",
            format!(r#"{{"data":"{UPID}"}}"#),
            |r, a| {
                let call = PowerCall {
                    kind: crate::pve::GuestKind::Lxc,
                    node: "pve1",
                    vmid: Vmid::new(101).unwrap(),
                    op: PowerOp::Start,
                };
                power_task(r, interpret(r, a)?, &call).map(drop)
            },
        ),
        (
            "PUT /nodes/pve1/lxc/101/config",
            r#"{"data":null}"#.into(),
            |r, a| task_id(r, interpret(r, a)?, None).map(drop),
        ),
        (
            "POST /nodes/pve1/qemu/201/config",
            r#"{"data":"UPID:pve1:0001A2B3:0456789A:6650F1C2:qmconfig:201:agent@pve!t:"}"#.into(),
            |r, a| {
                let task = crate::pve::client::ConfigTask {
                    node: "pve1",
                    vmid: Vmid::new(201).unwrap(),
                    kind: "qmconfig",
                };
                task_id(r, interpret(r, a)?, Some(task)).map(drop)
            },
        ),
    ]
}

/// The whole path from the body: a 2xx gives a value, Decode or Truncated; anything
/// else gives an Http error.
fn answer(request: &str, status: u16, body: &[u8], decoder: Decoder) -> Result<(), ApiError> {
    let a = Answer {
        status,
        reason: "OK",
        has_headers: true,
        body,
    };
    let result = decoder(request, &a);
    match (&result, (200..300).contains(&status)) {
        (Ok(()), true)
        | (Err(ApiError::Decode { .. } | ApiError::Truncated { .. }), true)
        | (Err(ApiError::Http { .. }), false) => {}
        _ => panic!("{request} (http {status}): unexpected {result:?}"),
    }
    result
}

#[test]
fn good_answers_decode() {
    for (request, body, decoder) in endpoints() {
        let r = answer(request, 200, body.as_bytes(), decoder);
        assert_eq!(r, Ok(()), "{request}");
    }
}

#[test]
fn malformed_answers_are_typed_errors() {
    let bad: &[(usize, &str, &str)] = &[
        (
            0,
            r#"{"data":{"release":"8.2"}}"#,
            "missing field `version`",
        ),
        (0, r#"{"data":{"version":[8]}}"#, "expected a string"),
        (
            1,
            r#"{"data":[{"vmid":"abc","status":"running"}]}"#,
            "invalid vmid",
        ),
        (
            1,
            r#"{"data":[{"vmid":12,"status":"running"}]}"#,
            "invalid vmid 12",
        ),
        (
            1,
            r#"{"data":[{"vmid":101.5,"status":"running"}]}"#,
            "invalid vmid",
        ),
        (
            1,
            r#"{"data":[{"status":"running"}]}"#,
            "missing field `vmid`",
        ),
        (1, r#"{"data":{"vmid":101}}"#, "expected a sequence"),
        (2, r#"{"data":{"cores":2}}"#, "missing field `digest`"),
        (
            2,
            r#"{"data":{"cores":"two","digest":"x"}}"#,
            "expected an unsigned integer",
        ),
        (
            2,
            r#"{"data":{"onboot":"maybe","digest":"x"}}"#,
            "expected a boolean",
        ),
        (3, r#"{"data":{"vmid":101}}"#, "missing field `status`"),
        (3, r#"{"data":{"status":7}}"#, "invalid type"),
        (
            5,
            r#"{"data":[{"type":"lxc","id":"lxc/101","node":"pve1"}]}"#,
            "missing field `vmid`",
        ),
        (5, r#"{"data":{"type":"lxc"}}"#, "invalid type"),
        (
            6,
            r#"{"data":[{"upid":"UPID:x","type":"vzstart","starttime":1}]}"#,
            "invalid UPID",
        ),
        (
            6,
            &format!(r#"{{"data":[{{"upid":"{UPID}","type":"vzstart","starttime":"soon"}}]}}"#),
            "expected an integer",
        ),
        (
            7,
            r#"{"data":{"upid":"nope","status":"stopped"}}"#,
            "invalid UPID \"nope\"",
        ),
        (
            7,
            &format!(r#"{{"data":{{"upid":"{UPID}","status":"paused"}}}}"#),
            "unknown variant",
        ),
        (
            8,
            r#"{"data":"UPID:pve1:1:2:3:vzstart:101:root@pam:"}"#,
            "pid is not 8 hex digits",
        ),
        (
            8,
            r#"{"data":{"upid":"x"}}"#,
            "expected the UPID of the task the call started",
        ),
        (
            8,
            r#"{"data":101}"#,
            "expected the UPID of the task the call started, got 101",
        ),
        (
            8,
            r#"{"data":null}"#,
            "expected the UPID of the task the call started, got null",
        ),
        (
            8,
            r#"{"data":"UPID:pve2:0001A2B3:0456789A:6650F1C2:vzstart:101:agent@pve!reconciler:"}"#,
            "it runs on node \"pve2\", not on \"pve1\"",
        ),
        (
            8,
            r#"{"data":"UPID:pve1:0001A2B3:0456789A:6650F1C2:vzstop:101:agent@pve!reconciler:"}"#,
            "its type is \"vzstop\", not vzstart or hastart",
        ),
        (9, r#"{"data":{"upid":"x"}}"#, "expected a task id or null"),
        (9, r#"{"data":101}"#, "expected a task id or null, got 101"),
        (9, r#"{"nodata":null}"#, "no \"data\" in the response"),
    ];
    let list = endpoints();
    for (i, body, want) in bad {
        let (request, _, decoder) = list[*i];
        match answer(request, 200, body.as_bytes(), decoder) {
            Err(ApiError::Decode { request: r, detail }) => {
                assert_eq!(r, request);
                assert!(detail.contains(want), "{request} {body}: {detail}");
            }
            other => panic!("{request} {body}: expected a decode error, got {other:?}"),
        }
    }
}

fn pick<'a>(
    rng: &mut XorShift,
    list: &'a [(&'static str, String, Decoder)],
) -> &'a (&'static str, String, Decoder) {
    &list[rng.below(list.len() as u64) as usize]
}

#[test]
fn fuzz_typed_answers_never_panic() {
    let list = endpoints();
    cases("typed answers", |rng| {
        let (request, body, decoder) = pick(rng, &list);
        let bytes = mutate(rng, body.as_bytes());
        let _ = answer(request, 200, &bytes, *decoder);
    });
}

#[test]
fn fuzz_error_answers_never_panic() {
    let list = endpoints();
    let bodies = [
        r#"{"data":null,"message":"CT 101 already running\n"}"#,
        r#"{"data":null,"errors":{"onboot":"type check ('boolean') failed - got 'true'"}}"#,
        "Method 'GET /nodes/pve1/foo' not implemented\n",
    ];
    cases("error answers", |rng| {
        let (request, _, decoder) = pick(rng, &list);
        let body = bodies[rng.below(bodies.len() as u64) as usize];
        let bytes = mutate(rng, body.as_bytes());
        let status = [400, 401, 403, 500, 501, 503, 596][rng.below(7) as usize];
        if let Err(e) = answer(request, status, &bytes, *decoder) {
            let _ = (
                e.to_string(),
                e.failure(),
                e.is_already_running(),
                e.lock_name(),
            );
        }
    });
}
