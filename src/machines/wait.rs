//! Waiting for a machine to reach a state: a long poll on the machine's state channel
//! (woken by every transition), never a sleep loop.

use super::machine::Machine;
use super::record::MachineState;
use std::str::FromStr;
use std::time::Duration;
use tokio::sync::watch;

/// A state a client can wait for (Fly's `wait?state=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    Started,
    Stopped,
    /// edgewake suspends by stopping (no snapshots), so a stopped machine counts.
    Suspended,
    Destroyed,
    /// edgewake's machines never end `failed` (a failed start leaves them `stopped`), so
    /// this goal is accepted and never reached.
    Failed,
    /// Any state that is not on its way to another one.
    Settled,
}

/// A `wait?state=` that names no state a client can wait for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown state `{0}`: use started, stopped, suspended, destroyed, failed or settled")]
pub struct UnknownGoal(pub String);

impl FromStr for Goal {
    type Err = UnknownGoal;

    fn from_str(text: &str) -> Result<Goal, UnknownGoal> {
        Ok(match text {
            "started" => Goal::Started,
            "stopped" => Goal::Stopped,
            "suspended" => Goal::Suspended,
            "destroyed" => Goal::Destroyed,
            "failed" => Goal::Failed,
            "settled" => Goal::Settled,
            other => return Err(UnknownGoal(other.to_string())),
        })
    }
}

impl Goal {
    pub fn reached_by(self, state: MachineState) -> bool {
        use MachineState as S;
        match self {
            Goal::Started => state == S::Started,
            Goal::Stopped | Goal::Suspended => state == S::Stopped,
            Goal::Destroyed => state == S::Destroyed,
            Goal::Failed => false,
            Goal::Settled => !matches!(state, S::Starting | S::Stopping | S::Destroying),
        }
    }
}

/// What a successful wait reports (Fly's `{"state","version","event_id"}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reached {
    pub state: MachineState,
    pub version: String,
    pub event_id: String,
}

/// Waits until the machine is in one of `goals` — and, with `after_event`, has logged
/// an event newer than that one — or until `timeout` passes (`None`).
pub async fn until(
    machine: &Machine,
    goals: &[Goal],
    after_event: Option<&str>,
    timeout: Duration,
) -> Option<Reached> {
    let mut states = machine.subscribe();
    let reached = |state: MachineState| {
        goals.iter().any(|g| g.reached_by(state))
            && after_event.is_none_or(|after| {
                machine
                    .record()
                    .events
                    .first()
                    .is_some_and(|e| e.id.as_str() > after)
            })
    };
    let state = until_state(&mut states, reached, timeout).await?;
    let record = machine.record();
    Some(Reached {
        state,
        version: record.instance_id.clone(),
        event_id: record
            .events
            .first()
            .map(|e| e.id.clone())
            .unwrap_or_default(),
    })
}

/// The core of `until`: checks the current state, then each change, until `reached`.
/// The channel's value is copied out before `reached` runs, so `reached` may lock the
/// record (which `Registry::transition` holds while it announces a state).
pub async fn until_state(
    states: &mut watch::Receiver<MachineState>,
    mut reached: impl FnMut(MachineState) -> bool,
    timeout: Duration,
) -> Option<MachineState> {
    let watch = async {
        loop {
            let state = *states.borrow_and_update();
            if reached(state) {
                return Some(state);
            }
            states.changed().await.ok()?;
        }
    };
    tokio::time::timeout(timeout, watch).await.ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A wait answers the moment the state changes, not at the next poll.
    #[tokio::test(start_paused = true)]
    async fn answers_at_the_change() {
        let (tx, mut rx) = watch::channel(MachineState::Started);
        let begun = tokio::time::Instant::now();
        let waiter = tokio::spawn(async move {
            until_state(
                &mut rx,
                |s| s == MachineState::Stopped,
                Duration::from_secs(60),
            )
            .await
        });
        tokio::time::sleep(Duration::from_millis(1500)).await;
        tx.send_replace(MachineState::Stopping);
        tx.send_replace(MachineState::Stopped);
        assert_eq!(waiter.await.unwrap(), Some(MachineState::Stopped));
        assert_eq!(begun.elapsed(), Duration::from_millis(1500));
    }

    /// A wait whose state never comes gives up at exactly the timeout.
    #[tokio::test(start_paused = true)]
    async fn gives_up_at_the_timeout() {
        let (_tx, mut rx) = watch::channel(MachineState::Started);
        let begun = tokio::time::Instant::now();
        let got = until_state(
            &mut rx,
            |s| s == MachineState::Stopped,
            Duration::from_secs(7),
        )
        .await;
        assert_eq!(got, None);
        assert_eq!(begun.elapsed(), Duration::from_secs(7));
    }

    /// A state already reached answers at once.
    #[tokio::test(start_paused = true)]
    async fn current_state_counts() {
        let (_tx, mut rx) = watch::channel(MachineState::Stopped);
        let got = until_state(
            &mut rx,
            |s| s == MachineState::Stopped,
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(got, Some(MachineState::Stopped));
    }

    /// Goals: suspended is met by stopped, settled by any resting state, failed by none.
    #[test]
    fn goals_match_states() {
        use MachineState as S;
        assert!(Goal::Suspended.reached_by(S::Stopped));
        assert!(Goal::Settled.reached_by(S::Created));
        assert!(!Goal::Settled.reached_by(S::Starting));
        assert!(!Goal::Failed.reached_by(S::Stopped));
        assert!("paused".parse::<Goal>().is_err());
    }
}
