//! Phase 3, pick: among the app's machines that serve the listener's port, a started one
//! with the fewest requests in flight; else the one already waking; else one stopped
//! machine to wake. A burst never wakes more than one machine. Cordoned machines are
//! left out entirely: they get no traffic and are never woken by it.
//!
//! Phase 2 (place: nearest region) comes with geo routing; today every machine is in
//! the edge's region, so placement is the identity.

use super::ProxyError;
use crate::machines::{App, Machine, MachineState};
use std::sync::Arc;

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
}

/// Chooses among candidates that serve the port; `None` when none can take the request.
pub fn choose(candidates: &[Candidate]) -> Option<(usize, Action)> {
    let started = candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| c.state == MachineState::Started)
        .min_by_key(|(_, c)| c.in_flight);
    if let Some((i, _)) = started {
        return Some((i, Action::Forward));
    }
    // A start under way is joined; a stop under way is waited out and the machine
    // woken again, unless autostart is off.
    let in_progress = |c: &Candidate| {
        c.waking
            || c.state == MachineState::Starting
            || (c.state == MachineState::Stopping && c.autostart)
    };
    if let Some(i) = candidates.iter().position(in_progress) {
        return Some((i, Action::Wake));
    }
    let wakeable = |c: &Candidate| {
        c.autostart && matches!(c.state, MachineState::Stopped | MachineState::Created)
    };
    candidates
        .iter()
        .position(wakeable)
        .map(|i| (i, Action::Wake))
}

/// Picks the machine of `app` for a request on `public_port`.
pub fn pick(
    app: &App,
    public_port: u16,
    waking: impl Fn(&Machine) -> bool,
) -> Result<(Arc<Machine>, Action), ProxyError> {
    app.with_machines(|machines| {
        let serving: Vec<(&Arc<Machine>, Candidate)> = machines
            .iter()
            .filter(|m| !m.is_gone() && !m.is_cordoned())
            .filter_map(|m| {
                let autostart = m.spec().service_for_port(public_port)?.autostart;
                let candidate = Candidate {
                    state: m.state(),
                    in_flight: m.activity.in_flight(),
                    waking: waking(m),
                    autostart,
                };
                Some((m, candidate))
            })
            .collect();
        let candidates: Vec<Candidate> = serving.iter().map(|(_, c)| *c).collect();
        match choose(&candidates) {
            Some((i, action)) => Ok((serving[i].0.clone(), action)),
            None => Err(ProxyError::NoMachines {
                app: app.record.name.clone(),
                port: public_port,
            }),
        }
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
        }
    }

    /// The started machine with the fewest requests in flight wins over stopped ones.
    #[test]
    fn least_loaded_started_machine() {
        let cs = [
            c(MachineState::Stopped, 0),
            c(MachineState::Started, 5),
            c(MachineState::Started, 2),
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
}
