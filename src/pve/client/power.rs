//! The power calls (start, shutdown, stop) of both kinds of guest, and the check of
//! their answer: PVE answers each with the UPID of the task it started, always
//! (docs/proxmox-api.md §5.1, §9.5). Anything else, or a UPID of a task the call cannot
//! have started, is an answer the client cannot read: [`ApiError::Decode`], whose
//! outcome is unknown (the call may have been carried out), so the caller neither takes
//! it as done nor journals or waits on a task that is not the call's.

use super::{shorten, Client};
use crate::pve::error::ApiError;
use crate::pve::form::{encode_component, Params};
use crate::pve::kind::GuestKind;
use crate::pve::types::PowerOp;
use crate::pve::{Upid, Vmid};
use minreq::Method;
use serde_json::Value;
use std::time::Instant;

/// One power call, as sent: what its answer must name.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PowerCall<'a> {
    pub kind: GuestKind,
    pub node: &'a str,
    pub vmid: Vmid,
    pub op: PowerOp,
}

impl PowerCall<'_> {
    /// `/nodes/{node}/{lxc|qemu}/{vmid}/status/{op}`.
    fn path(&self) -> String {
        format!(
            "/nodes/{}/{}/{}/status/{}",
            encode_component(self.node),
            self.kind.path_segment(),
            self.vmid,
            self.op.as_str()
        )
    }
}

impl Client {
    /// `POST /nodes/{node}/{lxc|qemu}/{vmid}/status/{start|stop|shutdown}` with `params`
    /// (`timeout`, `forceStop`, ...; wire strings): the UPID of the task it started, of
    /// a type in [`GuestKind::task_types`], on `node`, for `vmid`.
    ///
    /// An answer that is not such a UPID (`null`, another value, a UPID of another node,
    /// guest or task type) is [`ApiError::Decode`]: its
    /// [`ApiError::is_outcome_unknown`] is true, because the node may have started the
    /// task all the same.
    ///
    /// A VM's shutdown without `timeout` is refused here, unsent, as
    /// [`ApiError::Config`]: with the guest agent enabled PVE would otherwise wait up to
    /// 600 s for it (docs/proxmox-api.md §9.5).
    pub fn guest_power(
        &self,
        kind: GuestKind,
        node: &str,
        vmid: Vmid,
        op: PowerOp,
        params: &Params,
    ) -> Result<Upid, ApiError> {
        if kind == GuestKind::Qemu && op == PowerOp::Shutdown && !params.contains_key("timeout") {
            return Err(ApiError::Config(format!(
                "a shutdown of VM {vmid} needs a timeout; not sent"
            )));
        }
        let call = PowerCall {
            kind,
            node,
            vmid,
            op,
        };
        let path = call.path();
        let data: Value = self.request(
            Method::Post,
            &path,
            &[],
            Some(params),
            self.timeout,
            self.retry,
        )?;
        let upid = power_task(&format!("POST {path}"), data, &call)?;
        self.times.note_start(&upid, Instant::now());
        Ok(upid)
    }
}

/// The task a power call's answer names, checked against the call: a UPID on the node
/// asked, with the guest's vmid as its id, and a type the call starts. The API runs the
/// call on the node in its path, or on the node it reached for `localhost`, and the
/// task's UPID carries that node's own name (pve-manager `PVE/HTTPServer.pm`, the
/// `proxyto` dispatch; pve-common `src/PVE/RESTEnvironment.pm`, `fork_worker`).
pub(crate) fn power_task(
    request: &str,
    data: Value,
    call: &PowerCall<'_>,
) -> Result<Upid, ApiError> {
    let refuse = |detail: String| ApiError::Decode {
        request: request.to_string(),
        detail,
    };
    let upid: Upid = match data {
        Value::String(s) => s.parse().map_err(|e| refuse(format!("{e}")))?,
        other => {
            return Err(refuse(format!(
                "expected the UPID of the task the call started, got {}",
                shorten(&other)
            )))
        }
    };
    let types = call.kind.task_types(call.op);
    let wrong = if upid.node != call.node && call.node != "localhost" {
        format!("it runs on node {:?}, not on {:?}", upid.node, call.node)
    } else if upid.id != call.vmid.to_string() {
        format!("its id is {:?}, not guest {}", upid.id, call.vmid)
    } else if !types.contains(&upid.kind.as_str()) {
        format!("its type is {:?}, not {}", upid.kind, types.join(" or "))
    } else {
        return Ok(upid);
    };
    Err(refuse(format!(
        "the task {upid} is not one a {} of {} {} starts: {wrong}",
        call.op,
        call.kind.label(),
        call.vmid
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: &str = "UPID:pve1:0001A2B3:0456789A:6650F1C2:vzstart:101:agent@pve!reconciler:";

    fn call(kind: GuestKind, op: PowerOp) -> PowerCall<'static> {
        PowerCall {
            kind,
            node: "pve1",
            vmid: Vmid::new(101).unwrap(),
            op,
        }
    }

    fn detail(r: Result<Upid, ApiError>) -> String {
        match r {
            Err(e @ ApiError::Decode { .. }) => {
                assert!(e.is_outcome_unknown(), "{e}");
                let ApiError::Decode { request, detail } = e else {
                    unreachable!()
                };
                assert_eq!(request, "POST /x");
                detail
            }
            other => panic!("expected a decode error, got {other:?}"),
        }
    }

    #[test]
    fn the_path_names_node_kind_guest_and_op() {
        let mut c = call(GuestKind::Qemu, PowerOp::Shutdown);
        assert_eq!(c.path(), "/nodes/pve1/qemu/101/status/shutdown");
        c.node = "a b";
        assert_eq!(c.path(), "/nodes/a%20b/qemu/101/status/shutdown");
    }

    #[test]
    fn a_upid_of_the_call_is_its_task() {
        let lxc = call(GuestKind::Lxc, PowerOp::Start);
        let upid = power_task("POST /x", Value::from(START), &lxc).unwrap();
        assert_eq!(upid.to_string(), START);
        // HA-managed: hastart for a start, hastop for a shutdown or stop, either kind.
        for (kind, op, task) in [
            (GuestKind::Lxc, PowerOp::Start, "hastart"),
            (GuestKind::Qemu, PowerOp::Shutdown, "hastop"),
            (GuestKind::Qemu, PowerOp::Stop, "qmstop"),
            (GuestKind::Lxc, PowerOp::Shutdown, "vzshutdown"),
        ] {
            let text = START.replace("vzstart", task);
            let got = power_task("POST /x", Value::from(text.as_str()), &call(kind, op));
            assert_eq!(got.map(|u| u.kind), Ok(task.to_string()), "{kind} {op}");
        }
    }

    #[test]
    fn anything_else_is_an_answer_with_an_unknown_outcome() {
        let lxc = call(GuestKind::Lxc, PowerOp::Start);
        let said = |v: Value| detail(power_task("POST /x", v, &lxc));
        assert_eq!(
            said(Value::Null),
            "expected the UPID of the task the call started, got null"
        );
        assert!(said(serde_json::json!({"upid": START})).contains("got {\"upid\""));
        assert!(
            said(Value::from("UPID:pve1:1:2:3:vzstart:101:root@pam:")).starts_with("invalid UPID")
        );
        assert_eq!(
            said(Value::from(START.replace(":pve1:", ":pve2:"))),
            "the task UPID:pve2:0001A2B3:0456789A:6650F1C2:vzstart:101:agent@pve!reconciler: \
             is not one a start of CT 101 starts: it runs on node \"pve2\", not on \"pve1\""
        );
        // `localhost` is whichever node was reached: its UPID has the node's name.
        let local = PowerCall {
            node: "localhost",
            ..lxc
        };
        assert!(power_task("POST /x", Value::from(START), &local).is_ok());
        assert!(said(Value::from(START.replace(":101:", ":102:")))
            .ends_with("its id is \"102\", not guest 101"));
        assert!(said(Value::from(START.replace(":101:", "::")))
            .ends_with("its id is \"\", not guest 101"));
        assert!(said(Value::from(START.replace("vzstart", "vzstop")))
            .ends_with("its type is \"vzstop\", not vzstart or hastart"));
        // A VM's call is not answered by a container's task, nor the other way round.
        let vm = call(GuestKind::Qemu, PowerOp::Start);
        let e = detail(power_task("POST /x", Value::from(START), &vm));
        assert!(e.ends_with("not qmstart or hastart"), "{e}");
        let hastop = START.replace("vzstart", "hastop");
        let e = detail(power_task("POST /x", Value::from(hastop), &lxc));
        assert!(e.ends_with("not vzstart or hastart"), "{e}");
    }
}
