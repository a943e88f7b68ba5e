//! The one decision about a request the agent filed with HA: an `hastart` or `hastop`
//! task of ours that ended OK.
//!
//! For a guest that HA manages, a start, shutdown or stop does not act on the guest:
//! its task only files a request with ha-manager and ends `OK` at once (`ha-manager set
//! <sid> --state started`, `ha-manager crm-command stop <sid> <timeout>`; pve-container
//! src/PVE/API2/LXC/Status.pm, qemu-server PVE/API2/Qemu.pm). HA carries it out later,
//! after its CRM loop has picked it up. So the task's `OK` is not the op's success, and
//! both the executing lane (`crate::engine::exec`, right after the task) and a look at
//! an op in flight ([`super::look`], after a restart or a lost answer) ask this module
//! instead, with what the node shows of the guest now:
//!
//! - the guest is in the state asked for: the op succeeded;
//! - the guest left this node (HA relocated it to carry the request out, or it was
//!   migrated): ended, `succeeded` in the journal (the request was delivered), nothing
//!   more of ours;
//! - HA put the service in `error`: ended, failed;
//! - HA's state says something else was asked since (the opposite request, `disabled`),
//!   or HA no longer manages the guest: ended, `abandoned`, and the next pass plans
//!   from the live state;
//! - HA's state says it is carrying the request out (or the guest is being moved,
//!   frozen or recovered by HA): held, for as long as that lasts;
//! - HA's state is still the one from before the request (its CRM has not picked the
//!   request up yet: `status/current` gives the CRM's service state, pve-ha-manager
//!   src/PVE/HA/Config.pm `get_service_status`, which follows the requested state one
//!   CRM round later), or one this module does not know: held through the tracker's
//!   grace, on the monotonic clock, then ended as `abandoned`.
//!
//! Nothing here ends an op while HA may still act on its request, so nothing is sent
//! for the guest meanwhile, and the same request is never filed twice.

use super::{Ending, Tracker, Verdict};
use crate::action::ActionKind;
use crate::journal::OpId;
use crate::log;
use crate::pve::{ApiError, PowerState, Upid};
use std::time::Instant;

/// What the node shows of a guest now (`status/current`), for an HA request's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestNow {
    pub status: PowerState,
    /// Whether HA manages the guest (`ha.managed`).
    pub ha_managed: bool,
    /// HA's state of the guest (`ha.state`): the CRM's service state.
    pub ha_state: Option<String>,
}

impl From<crate::pve::StatusNow> for GuestNow {
    fn from(s: crate::pve::StatusNow) -> GuestNow {
        GuestNow {
            status: s.status,
            ha_managed: s.ha_managed,
            ha_state: s.ha_state,
        }
    }
}

/// Whether `upid` is a task that only files a request with HA.
pub fn is_ha_request(upid: &Upid) -> bool {
    upid.kind.starts_with("ha")
}

/// How HA stands towards a request of ours.
enum Stance {
    /// Carrying it out, or busy with the guest in a way that ends by itself.
    CarryingOut,
    /// Its state is still the one from before the request, or one not known here.
    NotYet,
    /// Something else was asked since, or HA no longer manages the guest.
    Against,
    /// The service is in HA's `error` state.
    Refused,
}

fn stance(want: &PowerState, guest: &GuestNow) -> Stance {
    let state = guest.ha_state.as_deref().unwrap_or("");
    if !guest.ha_managed || state == "ignored" {
        return Stance::Against;
    }
    let start = *want == PowerState::Running;
    match state {
        "error" => Stance::Refused,
        "freeze" | "migrate" | "relocate" | "fence" | "recovery" => Stance::CarryingOut,
        "started" | "request_start" | "request_start_balance" if start => Stance::CarryingOut,
        "stopped" | "request_stop" | "disabled" if !start => Stance::CarryingOut,
        "request_stop" | "disabled" if start => Stance::Against,
        "request_start" | "request_start_balance" if !start => Stance::Against,
        _ => Stance::NotYet,
    }
}

/// The outcome of op `op`, a `kind` whose HA request task `upid` ended OK, from what
/// the node shows of the guest now: `Ok(None)` when the guest is no longer on this
/// node. Never [`Verdict::TaskFound`].
pub fn request_outcome(
    op: OpId,
    kind: ActionKind,
    upid: &Upid,
    guest: Result<Option<GuestNow>, ApiError>,
    tracker: &Tracker,
) -> Verdict {
    let want = match kind {
        ActionKind::Start => PowerState::Running,
        ActionKind::Shutdown | ActionKind::Stop => PowerState::Stopped,
        // A config update never goes through HA.
        ActionKind::SetConfig => return Verdict::Ended(Ending::Succeeded),
    };
    let guest = match guest {
        Ok(Some(guest)) => guest,
        Ok(None) => {
            return Verdict::Ended(Ending::Moved(format!(
                "ha request {upid}: the guest is no longer on this node"
            )))
        }
        Err(e) => {
            return Verdict::Held(format!(
                "ha request {upid} filed; cannot read the guest's status: {}",
                log::Chain(&e)
            ))
        }
    };
    if guest.status == want {
        return Verdict::Ended(Ending::Succeeded);
    }
    let state = guest.ha_state.as_deref().unwrap_or("none");
    let now = guest.status.as_str();
    match stance(&want, &guest) {
        Stance::CarryingOut => Verdict::Held(format!(
            "ha request {upid} filed; HA is carrying it out (ha state {state}), the guest \
             is {now} so far"
        )),
        Stance::Refused => Verdict::Ended(Ending::Failed(format!(
            "ha request {upid}: HA put the service in its error state"
        ))),
        Stance::Against if !guest.ha_managed => Verdict::Ended(Ending::Settled(format!(
            "ha request {upid}: HA no longer manages the guest, so the request can no \
             longer take effect; the next pass plans from the live state"
        ))),
        Stance::Against => Verdict::Ended(Ending::Settled(format!(
            "ha request {upid}: HA's state is now {state}, so something else was asked \
             since; the next pass plans from the live state"
        ))),
        Stance::NotYet => {
            let waited = tracker.ha_idle_for(op, Instant::now());
            if waited >= tracker.grace() {
                return Verdict::Ended(Ending::Settled(format!(
                    "ha request {upid}: HA did not take it up (ha state {state}, the guest \
                     {now}) in {} s; the next pass plans from the live state",
                    waited.as_secs()
                )));
            }
            Verdict::Held(format!(
                "ha request {upid} filed; HA has not taken it up yet (ha state {state}, the \
                 guest {now}; waiting up to {} s more)",
                (tracker.grace() - waited).as_secs()
            ))
        }
    }
}
