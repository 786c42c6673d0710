//! Which machine a request's plan picks, across regions, pins, cordons and limits: the
//! decisions `pick` makes around `choose`, over real machine records.

use super::*;
use crate::lifecycle::pick::{Action, Picked, pick};
use crate::machines::checks::Health;
use std::collections::HashSet;

fn plan(regions: &[&str], others_allowed: bool, pinned: Pinned) -> Plan {
    Plan {
        regions: regions.iter().map(|r| r.to_string()).collect(),
        others_allowed,
        pinned,
        avoid: Vec::new(),
    }
}

impl World {
    /// A machine in `region` in `state` (no process behind it: picking reads state only).
    fn in_state(&self, region: &str, state: MachineState, config: Value) -> Arc<Machine> {
        let machine = self.machine_in(region, config);
        self.sup.registry.transition(&machine, state, None);
        machine
    }

    fn pick(&self, plan: &Plan) -> Result<Picked, AcquireError> {
        self.pick_excluding(plan, &HashSet::new())
    }

    fn pick_excluding(
        &self,
        plan: &Plan,
        excluded: &HashSet<String>,
    ) -> Result<Picked, AcquireError> {
        pick(&self.app, 80, plan, excluded, |_| false)
    }

    /// Picks while `waking` has a wake begun (which its state may not show yet).
    fn pick_while_waking(&self, plan: &Plan, waking: &Machine) -> Result<Picked, AcquireError> {
        pick(&self.app, 80, plan, &HashSet::new(), |m| m.id == waking.id)
    }
}

/// The chosen machine's id and what to do with it.
fn chosen(picked: Result<Picked, AcquireError>) -> (String, Action, bool) {
    let picked = picked.unwrap_or_else(|e| panic!("nothing picked: {e}"));
    (
        picked.machine.id.clone(),
        picked.action,
        picked.preferred_unavailable,
    )
}

/// The first region of the plan that can serve wins, even with a stopped machine
/// against a started one further down; regions the app has no machine in are passed.
#[test]
fn first_region_of_the_plan_that_can_serve() {
    let w = world();
    let syd = w.in_state("syd", MachineState::Stopped, config(None));
    let cdg = w.in_state("cdg", MachineState::Started, config(None));
    let nearest_syd = plan(&["nrt", "syd", "cdg"], true, Pinned::Any);
    assert_eq!(
        chosen(w.pick(&nearest_syd)),
        (syd.id.clone(), Action::Wake, false)
    );
    let nearest_cdg = plan(&["cdg", "syd"], true, Pinned::Any);
    assert_eq!(
        chosen(w.pick(&nearest_cdg)),
        (cdg.id.clone(), Action::Forward, false)
    );
}

/// A machine in a region the plan does not list serves only when others are allowed.
#[test]
fn other_regions_only_when_allowed() {
    let w = world();
    let syd = w.in_state("syd", MachineState::Started, config(None));
    assert_eq!(chosen(w.pick(&plan(&["cdg"], true, Pinned::Any))).0, syd.id);
    let forced = w.pick(&plan(&["cdg"], false, Pinned::Any));
    assert!(matches!(
        forced,
        Err(AcquireError::NoMachines { port: 80, .. })
    ));
}

/// Cordoned, destroyed and excluded machines, and machines whose services do not serve
/// the port, are never picked.
#[test]
fn unservable_machines_are_skipped() {
    let w = world();
    let serving = w.in_state("ams", MachineState::Stopped, config(None));
    let cordoned = w.in_state("ams", MachineState::Started, config(None));
    w.sup.registry.set_cordoned(&cordoned, true);
    w.in_state("ams", MachineState::Destroying, config(None));
    let mut other_port = config(None);
    other_port["services"][0]["ports"][0]["port"] = json!(8443);
    w.in_state("ams", MachineState::Started, other_port);
    let excluded = w.in_state("ams", MachineState::Started, config(None));
    let all = plan(&["ams"], true, Pinned::Any);
    let excluding = HashSet::from([excluded.id.clone()]);
    let picked = chosen(w.pick_excluding(&all, &excluding));
    assert_eq!(picked, (serving.id.clone(), Action::Wake, false));
}

/// `fly-force-instance-id`: that machine, wherever it is; an unknown one is
/// `UnknownInstance`, a known one that cannot serve `InstanceUnavailable` — never
/// another machine.
#[test]
fn forced_instance_or_a_clear_refusal() {
    let w = world();
    w.in_state("ams", MachineState::Started, config(None));
    let far = w.in_state("syd", MachineState::Stopped, config(None));
    let force = |id: &str| plan(&["ams"], false, Pinned::Force(id.to_string()));
    assert_eq!(
        chosen(w.pick(&force(&far.id))),
        (far.id.clone(), Action::Wake, false)
    );
    let unknown = w.pick(&force("00000000000000"));
    assert!(matches!(unknown, Err(AcquireError::UnknownInstance { .. })));
    w.sup.registry.set_cordoned(&far, true);
    let unavailable = w.pick(&force(&far.id));
    assert!(matches!(
        unavailable,
        Err(AcquireError::InstanceUnavailable { .. })
    ));
}

/// `fly-prefer-instance-id`: that machine if it can serve; otherwise the plan's choice,
/// told that the preferred one was unavailable.
#[test]
fn preferred_instance_first_else_said_unavailable() {
    let w = world();
    let near = w.in_state("ams", MachineState::Started, config(None));
    let far = w.in_state("syd", MachineState::Started, config(None));
    let prefer = |id: &str| plan(&["ams", "syd"], true, Pinned::Prefer(id.to_string()));
    assert_eq!(
        chosen(w.pick(&prefer(&far.id))),
        (far.id.clone(), Action::Forward, false)
    );
    w.sup.registry.set_cordoned(&far, true);
    assert_eq!(
        chosen(w.pick(&prefer(&far.id))),
        (near.id.clone(), Action::Forward, true)
    );
    assert!(chosen(w.pick(&prefer("00000000000000"))).2);
}

/// Nothing to pick is `AtHardLimit` (worth queueing) only when a machine the plan
/// allows is full; a full machine in a region the plan excludes is `NoMachines`.
#[test]
fn at_hard_limit_only_for_machines_the_plan_allows() {
    let w = world();
    let full = w.in_state("syd", MachineState::Started, config(Some(1)));
    let _request = full.enter();
    let allowed = w.pick(&plan(&["syd"], false, Pinned::Any));
    assert!(matches!(allowed, Err(AcquireError::AtHardLimit { .. })));
    let elsewhere = w.pick(&plan(&["ams"], true, Pinned::Any));
    assert!(matches!(elsewhere, Err(AcquireError::AtHardLimit { .. })));
    let excluded = w.pick(&plan(&["ams"], false, Pinned::Any));
    assert!(matches!(excluded, Err(AcquireError::NoMachines { .. })));
}

/// A machine whose wake has begun is joined, though its state still says stopped: a
/// burst never wakes a second machine.
#[test]
fn a_wake_begun_is_joined() {
    let w = world();
    w.in_state("ams", MachineState::Stopped, config(None));
    let waking = w.in_state("ams", MachineState::Stopped, config(None));
    let picked = w.pick_while_waking(&plan(&["ams"], true, Pinned::Any), &waking);
    assert_eq!(chosen(picked), (waking.id.clone(), Action::Wake, false));
}

/// A started machine at its soft limit is not taken for one being woken: its stopped
/// sibling is woken instead.
#[test]
fn above_the_soft_limit_a_sibling_is_woken() {
    let w = world();
    let mut soft = config(Some(5));
    soft["services"][0]["concurrency"]["soft_limit"] = json!(1);
    let busy = w.in_state("ams", MachineState::Started, soft.clone());
    let _request = busy.enter();
    let sibling = w.in_state("ams", MachineState::Stopped, soft);
    let picked = w.pick_while_waking(&plan(&["ams"], true, Pinned::Any), &busy);
    assert_eq!(chosen(picked), (sibling.id.clone(), Action::Wake, false));
}

/// A stopped machine that may not be woken (autostart off) is no reason to queue: the
/// request is refused at once (`NoMachines`), not made to wait for room.
#[test]
fn unwakeable_machines_are_not_worth_queueing() {
    let w = world();
    let mut off = config(Some(5));
    off["services"][0]["autostart"] = json!(false);
    w.in_state("ams", MachineState::Stopped, off);
    let picked = w.pick(&plan(&["ams"], true, Pinned::Any));
    assert!(matches!(picked, Err(AcquireError::NoMachines { .. })));
}

/// A started machine failing its health checks gets no request; with nothing else to
/// serve, the app is `Unhealthy` (worth waiting for) where the plan allows that machine,
/// and has `NoMachines` where it does not.
#[test]
fn failing_machines_make_the_app_unhealthy() {
    let w = world();
    let failing = w.in_state("syd", MachineState::Started, config(None));
    failing.checks.set_health(Health::Failing);
    let allowed = w.pick(&plan(&["syd"], false, Pinned::Any));
    assert!(matches!(allowed, Err(AcquireError::Unhealthy { .. })));
    let elsewhere = w.pick(&plan(&["ams"], false, Pinned::Any));
    assert!(matches!(elsewhere, Err(AcquireError::NoMachines { .. })));
}
