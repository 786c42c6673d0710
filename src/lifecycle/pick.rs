//! Pick: within the nearest region that can take the request, a started machine
//! under its soft limit with the fewest requests in flight; else the machine already
//! waking; else one stopped machine to wake (a burst never wakes more than one); else a
//! started machine between its soft and hard limits. Only when a region has nothing
//! does the next one get the request. Cordoned machines get no traffic at all, nor do
//! machines whose health checks fail; a started machine whose checks have not passed
//! yet is joined like a wake in progress.
//! Machines of a cluster node that is down are skipped too.

use super::AcquireError;
use crate::machines::checks::Health;
use crate::machines::{App, Machine, MachineState};
use smallvec::SmallVec;
use std::collections::HashSet;
use std::sync::Arc;

/// Machines a pick looks at without allocating (an app with more spills to the heap):
/// picking runs on every request.
const ON_STACK: usize = 8;

/// The serving machines of an app with what picking needs of each.
type Serving<'a> = SmallVec<[(&'a Arc<Machine>, Candidate); ON_STACK]>;

/// Region codes in the order a request tries them, shared: most requests reuse one.
pub type Order = Arc<[String]>;

/// Which machine the request asks for by id (Fly's `fly-*-instance-id` headers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pinned {
    Any,
    Prefer(String),
    Force(String),
}

/// Where a request may go, in order: what the proxy's place phase decides.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Regions to try, nearest (or preferred) first.
    pub regions: Order,
    /// Whether machines in regions not listed may serve as a last resort.
    pub others_allowed: bool,
    pub pinned: Pinned,
    /// Machines this request could not reach already (it goes to another).
    pub avoid: Vec<String>,
}

/// What the proxy should do with the chosen machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// It is started: forward to it.
    Forward,
    /// It is stopped or already starting: wake it (or join the wake) and wait.
    Wake,
}

/// The facts about one machine that picking needs.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    pub state: MachineState,
    pub in_flight: usize,
    pub waking: bool,
    pub autostart: bool,
    pub soft_limit: usize,
    pub hard_limit: Option<usize>,
    /// What its health checks say (always `Routable` without checks).
    pub health: Health,
}

impl Candidate {
    /// The soft limit, lowered to the hard limit when that is below it (a config may set
    /// only `hard_limit`, under the default soft limit).
    fn soft(&self) -> usize {
        self.hard_limit
            .map_or(self.soft_limit, |hard| hard.min(self.soft_limit))
    }

    /// Started, healthy, and with room under `limit`.
    fn started_below(&self, limit: Option<usize>) -> bool {
        self.state == MachineState::Started
            && self.health == Health::Routable
            && limit.is_none_or(|l| self.in_flight < l)
    }

    /// Started, but its checks fail: it gets no new requests.
    fn failing(&self) -> bool {
        self.state == MachineState::Started && self.health == Health::Failing
    }
}

fn least_loaded(candidates: &[Candidate], ok: impl Fn(&Candidate) -> bool) -> Option<usize> {
    candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| ok(c))
        .min_by_key(|(_, c)| c.in_flight)
        .map(|(i, _)| i)
}

/// Chooses among one region's candidates; `None` when none can take the request.
pub fn choose(candidates: &[Candidate]) -> Option<(usize, Action)> {
    if let Some(i) = least_loaded(candidates, |c| c.started_below(Some(c.soft()))) {
        return Some((i, Action::Forward));
    }
    // A start under way is joined; a stop under way is waited out and the machine
    // woken again, unless autostart is off.
    let in_progress = |c: &Candidate| {
        c.waking
            || c.state == MachineState::Starting
            || (c.state == MachineState::Stopping && c.autostart)
            || (c.state == MachineState::Started && c.health == Health::Settling)
    };
    let wakeable = |c: &Candidate| {
        c.autostart && matches!(c.state, MachineState::Stopped | MachineState::Created)
    };
    if let Some(i) = candidates
        .iter()
        .position(in_progress)
        .or_else(|| candidates.iter().position(wakeable))
    {
        return Some((i, Action::Wake));
    }
    least_loaded(candidates, |c| c.started_below(c.hard_limit)).map(|i| (i, Action::Forward))
}

/// The machine chosen for a request.
pub struct Picked {
    pub machine: Arc<Machine>,
    pub action: Action,
    /// `fly-prefer-instance-id` named a machine that could not take the request.
    pub preferred_unavailable: bool,
}

/// Picks the machine of `app` for a request on `public_port`, following `plan`, never
/// one in `excluded` (machines that failed to wake for this request).
pub fn pick(
    app: &App,
    public_port: u16,
    plan: &Plan,
    excluded: &HashSet<String>,
    waking: impl Fn(&Machine) -> bool,
) -> Result<Picked, AcquireError> {
    app.with_machines(|machines| {
        let serving: Serving = machines
            .iter()
            .filter(|m| !m.is_gone() && !m.is_cordoned() && !excluded.contains(&m.id))
            .filter(|m| m.is_reachable())
            .filter_map(|m| Some((m, candidate(m, public_port, &waking)?)))
            .collect();
        let picked = |(machine, action): (&Arc<Machine>, Action), preferred_unavailable| Picked {
            machine: machine.clone(),
            action,
            preferred_unavailable,
        };
        match &plan.pinned {
            Pinned::Force(id) => {
                return pick_forced(app, &serving, id).map(|chosen| picked(chosen, false));
            }
            Pinned::Prefer(id) => {
                if let Some(chosen) = among(&serving, |m| &m.id == id) {
                    return Ok(picked(chosen, false));
                }
            }
            Pinned::Any => {}
        }
        let preferred_unavailable = matches!(plan.pinned, Pinned::Prefer(_));
        // Only the regions this app has machines in are worth a look (a handful of 35).
        let mut present: SmallVec<[&str; ON_STACK]> =
            serving.iter().map(|(m, _)| m.region.as_str()).collect();
        present.sort_unstable();
        present.dedup();
        let in_plan = plan
            .regions
            .iter()
            .filter(|region| present.binary_search(&region.as_str()).is_ok())
            .find_map(|region| among(&serving, |m| &m.region == region));
        let elsewhere = || {
            plan.others_allowed
                .then(|| among(&serving, |m| !plan.regions.contains(&m.region)))
                .flatten()
        };
        let full = |c: &Candidate| {
            c.state == MachineState::Started
                && c.health == Health::Routable
                && !c.started_below(c.hard_limit)
        };
        let allowed = |m: &Machine| plan.others_allowed || plan.regions.contains(&m.region);
        match in_plan.or_else(elsewhere) {
            Some(chosen) => Ok(picked(chosen, preferred_unavailable)),
            // Waiting only helps when a machine the plan allows is full.
            None if serving.iter().any(|(m, c)| full(c) && allowed(m)) => {
                Err(AcquireError::AtHardLimit {
                    app: app.record.name.clone(),
                })
            }
            // Fly blocks on an unhealthy machine when nothing else can serve.
            None if serving.iter().any(|(m, c)| c.failing() && allowed(m)) => {
                Err(AcquireError::Unhealthy {
                    app: app.record.name.clone(),
                })
            }
            None => Err(AcquireError::NoMachines {
                app: app.record.name.clone(),
                port: public_port,
            }),
        }
    })
}

fn candidate(
    machine: &Machine,
    port: u16,
    waking: &impl Fn(&Machine) -> bool,
) -> Option<Candidate> {
    let spec = machine.spec();
    let service = spec.service_for_port(port)?;
    let state = machine.state();
    Some(Candidate {
        state,
        in_flight: machine.activity.in_flight(),
        // Only a machine that is not started can be waking; started ones skip the look.
        waking: state != MachineState::Started && waking(machine),
        autostart: service.autostart,
        soft_limit: service.concurrency.soft_limit,
        hard_limit: service.concurrency.hard_limit,
        health: machine.checks.health(),
    })
}

/// `choose` over the serving machines that `keep` selects.
fn among<'a>(
    serving: &[(&'a Arc<Machine>, Candidate)],
    keep: impl Fn(&Machine) -> bool,
) -> Option<(&'a Arc<Machine>, Action)> {
    let group: SmallVec<[&(&Arc<Machine>, Candidate); ON_STACK]> =
        serving.iter().filter(|(m, _)| keep(m)).collect();
    let candidates: SmallVec<[Candidate; ON_STACK]> = group.iter().map(|(_, c)| *c).collect();
    choose(&candidates).map(|(i, action)| (group[i].0, action))
}

/// `fly-force-instance-id`: that machine or a clear refusal, never another machine.
fn pick_forced<'a>(
    app: &App,
    serving: &[(&'a Arc<Machine>, Candidate)],
    id: &str,
) -> Result<(&'a Arc<Machine>, Action), AcquireError> {
    let known = app.with_machines(|ms| ms.iter().any(|m| m.id == id && !m.is_gone()));
    if !known {
        return Err(AcquireError::UnknownInstance {
            app: app.record.name.clone(),
            machine: id.to_string(),
        });
    }
    among(serving, |m| m.id == id).ok_or_else(|| AcquireError::InstanceUnavailable {
        machine: id.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(state: MachineState, in_flight: usize) -> Candidate {
        Candidate {
            state,
            in_flight,
            waking: false,
            autostart: true,
            soft_limit: 20,
            hard_limit: None,
            health: Health::Routable,
        }
    }

    /// The started machine with the fewest requests in flight wins over stopped ones.
    #[test]
    fn least_loaded_started_machine() {
        let cs = [
            c(MachineState::Stopped, 0),
            c(MachineState::Started, 5),
            c(MachineState::Started, 1),
        ];
        assert_eq!(choose(&cs), Some((2, Action::Forward)));
    }

    /// A machine already starting is joined instead of waking a second one.
    #[test]
    fn joins_the_wake_in_progress() {
        let mut waking = c(MachineState::Stopped, 0);
        waking.waking = true;
        let cs = [c(MachineState::Stopped, 0), waking];
        assert_eq!(choose(&cs), Some((1, Action::Wake)));
    }

    /// With only stopped machines, the first is woken; autostart off means none is.
    #[test]
    fn wakes_one_stopped_machine_unless_autostart_is_off() {
        let cs = [c(MachineState::Stopped, 0), c(MachineState::Stopped, 0)];
        assert_eq!(choose(&cs), Some((0, Action::Wake)));
        let mut off = c(MachineState::Stopped, 0);
        off.autostart = false;
        assert_eq!(choose(&[off]), None);
        assert_eq!(choose(&[]), None);
    }

    /// Above the soft limit a stopped sibling is woken; with none, the busy machine
    /// serves until its hard limit, and then the region has nothing to offer.
    #[test]
    fn soft_and_hard_limits() {
        let mut busy = c(MachineState::Started, 20);
        assert_eq!(
            choose(&[busy, c(MachineState::Stopped, 0)]),
            Some((1, Action::Wake))
        );
        assert_eq!(choose(&[busy]), Some((0, Action::Forward)));
        busy.hard_limit = Some(20);
        assert_eq!(choose(&[busy]), None);
    }

    /// A hard limit below the soft one is the limit for both: a full machine gets
    /// nothing more, and a stopped sibling is woken instead.
    #[test]
    fn hard_limit_below_the_soft_limit() {
        let mut full = c(MachineState::Started, 1);
        full.hard_limit = Some(1);
        assert_eq!(choose(&[full]), None);
        assert_eq!(
            choose(&[full, c(MachineState::Stopped, 0)]),
            Some((1, Action::Wake))
        );
    }

    /// A failing machine gets nothing while a healthy neighbour serves; one whose
    /// checks have not passed yet is joined (not forwarded to), never a second woken.
    #[test]
    fn health_gates_forwarding() {
        let mut failing = c(MachineState::Started, 0);
        failing.health = Health::Failing;
        assert_eq!(
            choose(&[failing, c(MachineState::Started, 5)]),
            Some((1, Action::Forward))
        );
        assert_eq!(choose(&[failing]), None);
        let mut settling = c(MachineState::Started, 0);
        settling.health = Health::Settling;
        assert_eq!(
            choose(&[c(MachineState::Stopped, 0), settling]),
            Some((1, Action::Wake))
        );
    }
}
