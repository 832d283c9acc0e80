//! The call lifecycle (section 6 of the contract), once: every transition, what it
//! refuses, what it leaves unchanged, and the events it causes, in order.
//!
//! ```text
//! initiated ──accept──▶ accepted ──end / room finished / deadline──▶ ended
//!     └── end · decline · deadline · room finished ──────────────────▶ ended
//! ```
//!
//! Every transition changes `status`, so a store can apply one atomically by checking
//! that the status it was decided on is still the stored one.

use super::{Call, CallStatus, EndReason, Event, Timestamp, UserId};
use serde::Serialize;
use std::time::Duration;
use utoipa::ToSchema;

/// What may happen to a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// The callee answers (`/accept`, its token request, or its LiveKit join).
    Accept { by: UserId },
    /// The callee declines.
    Decline { by: UserId, reason: DeclineReason },
    /// `/end`, naming who ends it or no one.
    End { by: Option<UserId> },
    /// Its LiveKit room finished.
    RoomFinished,
    /// Its stored deadline passed: the ring timeout, or the maximum duration.
    Deadline,
}

/// How the callee declined.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeclineReason {
    #[default]
    Declined,
    Busy,
}

impl DeclineReason {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "declined" => Some(Self::Declined),
            "busy" => Some(Self::Busy),
            _ => None,
        }
    }
}

/// A transition the call's state does not allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Only the callee may accept or decline.
    NotTheCallee,
    /// Only the caller or the callee may end it.
    NotAParticipant,
    /// It has ended.
    Ended,
    /// It was accepted, so it can no longer be declined.
    AlreadyAccepted,
}

/// What a transition does.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The call becomes `call`; `events` announce it, in this order.
    Changed { call: Call, events: Vec<Event> },
    /// Nothing happens (an idempotent repeat): the call stays as it is.
    Unchanged,
}

/// The server's deadlines: how long a call may ring and last once answered, and how long an
/// ended call and an inactive room are kept (section 11).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// `None`: a call rings until someone acts.
    pub ring: Option<Duration>,
    /// `None`: an accepted call lasts until someone ends it.
    pub max_duration: Option<Duration>,
    /// `None`: ended calls are kept for ever.
    pub call_retention: Option<Duration>,
    /// `None`: rooms are kept for ever.
    pub room_retention: Option<Duration>,
}

impl Timeouts {
    /// When the call's next deadline is due in its current state (its timer, or once ended
    /// its deletion); `None` when it has none.
    pub fn deadline(&self, call: &Call) -> Option<Timestamp> {
        let (from, after) = match call.status {
            CallStatus::Initiated => (call.start_time, self.ring?),
            CallStatus::Accepted => (call.answer_time?, self.max_duration?),
            CallStatus::Ended => (call.end_time?, self.call_retention?),
        };
        Some(later(from, after))
    }

    /// When a room whose last activity (creation or join) was `at` is deleted.
    pub fn room_expiry(&self, at: Timestamp) -> Option<Timestamp> {
        Some(later(at, self.room_retention?))
    }
}

fn later(from: Timestamp, after: Duration) -> Timestamp {
    let after = i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
    Timestamp::from_millis(from.millis().saturating_add(after))
}

impl Call {
    /// Applies `transition` at time `at`: the new call and its events, nothing, or a refusal.
    pub fn apply(&self, transition: Transition, at: Timestamp) -> Result<Outcome, Refusal> {
        use CallStatus::{Accepted, Ended, Initiated};
        match (transition, self.status) {
            (Transition::Accept { by } | Transition::Decline { by, .. }, _) if by != self.to_user_id => {
                Err(Refusal::NotTheCallee)
            }
            (Transition::End { by: Some(by) }, _) if !self.involves(by) => Err(Refusal::NotAParticipant),
            (Transition::Accept { by }, Initiated) => {
                let mut call = self.clone();
                call.status = Accepted;
                call.answer_time = Some(at);
                Ok(Outcome::Changed { events: vec![Event::call_accepted(call.id, by, at)], call })
            }
            (Transition::Accept { .. }, Accepted) => Ok(Outcome::Unchanged),
            (Transition::Accept { .. }, Ended) => Err(Refusal::Ended),
            (Transition::Decline { by, reason }, Initiated) => {
                let end = match reason {
                    DeclineReason::Declined => EndReason::Declined,
                    DeclineReason::Busy => EndReason::Busy,
                };
                let declined = Event::call_declined(self.id, by, reason);
                Ok(self.end(end, Some(by), at, Some(declined)))
            }
            (Transition::Decline { .. }, Accepted) => Err(Refusal::AlreadyAccepted),
            (Transition::End { by }, Initiated) => Ok(self.end(EndReason::Cancelled, by, at, None)),
            (Transition::End { by }, Accepted) => Ok(self.end(EndReason::Completed, by, at, None)),
            (Transition::RoomFinished, Initiated) => Ok(self.end(EndReason::Cancelled, None, at, None)),
            (Transition::RoomFinished, Accepted) => Ok(self.end(EndReason::Completed, None, at, None)),
            (Transition::Deadline, Initiated) => {
                Ok(self.end(EndReason::Missed, None, at, Some(Event::call_missed(self.id))))
            }
            (Transition::Deadline, Accepted) => Ok(self.end(EndReason::Expired, None, at, None)),
            (_, Ended) => Ok(Outcome::Unchanged),
        }
    }

    /// The call ended for `reason`; `first` (if any) is announced before `call.ended`.
    fn end(&self, reason: EndReason, by: Option<UserId>, at: Timestamp, first: Option<Event>) -> Outcome {
        let mut call = self.clone();
        call.status = CallStatus::Ended;
        call.end_time = Some(at);
        call.end_reason = Some(reason);
        call.ended_by = by;
        let events = first.into_iter().chain([Event::call_ended(call.id)]).collect();
        Outcome::Changed { call, events }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ringing() -> Call {
        Call::new(UserId::new(), UserId::new())
    }

    fn changed(call: &Call, t: Transition) -> (Call, Vec<&'static str>) {
        match call.apply(t, Timestamp::now()) {
            Ok(Outcome::Changed { call, events }) => (call, events.iter().map(Event::name).collect()),
            other => panic!("expected a change, got {other:?}"),
        }
    }

    #[test]
    fn every_way_to_end_has_its_reason_author_and_events() {
        let call = ringing();
        let (caller, callee) = (call.from_user_id, call.to_user_id);
        let (accepted, events) = changed(&call, Transition::Accept { by: callee });
        assert_eq!((accepted.status, events), (CallStatus::Accepted, vec!["call.accepted"]));
        assert!(accepted.answer_time.is_some() && accepted.end_time.is_none());
        let busy = Transition::Decline { by: callee, reason: DeclineReason::Busy };
        let cases = [
            (&call, Transition::End { by: Some(caller) }, EndReason::Cancelled, Some(caller), vec!["call.ended"]),
            (&call, Transition::End { by: None }, EndReason::Cancelled, None, vec!["call.ended"]),
            (&call, busy, EndReason::Busy, Some(callee), vec!["call.declined", "call.ended"]),
            (&call, Transition::Deadline, EndReason::Missed, None, vec!["call.missed", "call.ended"]),
            (&call, Transition::RoomFinished, EndReason::Cancelled, None, vec!["call.ended"]),
            (&accepted, Transition::End { by: Some(callee) }, EndReason::Completed, Some(callee), vec!["call.ended"]),
            (&accepted, Transition::RoomFinished, EndReason::Completed, None, vec!["call.ended"]),
            (&accepted, Transition::Deadline, EndReason::Expired, None, vec!["call.ended"]),
        ];
        for (before, transition, reason, by, names) in cases {
            let (after, events) = changed(before, transition);
            assert_eq!(after.status, CallStatus::Ended, "{transition:?}");
            assert_eq!((after.end_reason, after.ended_by, events), (Some(reason), by, names), "{transition:?}");
            assert_eq!(after.answer_time, before.answer_time);
        }
    }

    #[test]
    fn repeats_change_nothing_and_conflicts_are_refused() {
        let call = ringing();
        let (caller, callee, outsider) = (call.from_user_id, call.to_user_id, UserId::new());
        let (accepted, _) = changed(&call, Transition::Accept { by: callee });
        let (ended, _) = changed(&call, Transition::End { by: None });
        let decline = Transition::Decline { by: callee, reason: DeclineReason::Declined };
        let at = Timestamp::now();
        assert_eq!(call.apply(Transition::Accept { by: caller }, at), Err(Refusal::NotTheCallee));
        assert_eq!(ended.apply(Transition::Accept { by: outsider }, at), Err(Refusal::NotTheCallee));
        assert_eq!(call.apply(Transition::End { by: Some(outsider) }, at), Err(Refusal::NotAParticipant));
        assert_eq!(accepted.apply(Transition::Accept { by: callee }, at), Ok(Outcome::Unchanged));
        assert_eq!(ended.apply(Transition::Accept { by: callee }, at), Err(Refusal::Ended));
        assert_eq!(accepted.apply(decline, at), Err(Refusal::AlreadyAccepted));
        for t in [decline, Transition::End { by: Some(caller) }, Transition::RoomFinished, Transition::Deadline] {
            assert_eq!(ended.apply(t, at), Ok(Outcome::Unchanged), "{t:?}");
        }
    }

    #[test]
    fn deadlines_follow_the_state() {
        let timeouts = Timeouts {
            ring: Some(Duration::from_secs(60)),
            max_duration: Some(Duration::from_secs(5)),
            ..Timeouts::default()
        };
        let call = ringing();
        let ring = timeouts.deadline(&call).expect("rings");
        assert_eq!(ring.millis() - call.start_time.millis(), 60_000);
        let (accepted, _) = changed(&call, Transition::Accept { by: call.to_user_id });
        let answer = accepted.answer_time.expect("answered");
        assert_eq!(timeouts.deadline(&accepted).map(|d| d.millis() - answer.millis()), Some(5_000));
        let (ended, _) = changed(&accepted, Transition::End { by: None });
        assert_eq!(timeouts.deadline(&ended), None, "kept for ever");
        let kept = Timeouts { call_retention: Some(Duration::from_secs(30)), ..timeouts };
        let end = ended.end_time.expect("ended");
        assert_eq!(kept.deadline(&ended).map(|d| d.millis() - end.millis()), Some(30_000));
        assert_eq!(Timeouts::default().deadline(&call), None);
        assert_eq!(Timeouts::default().room_expiry(end), None);
        let rooms = Timeouts { room_retention: Some(Duration::from_secs(7)), ..timeouts };
        assert_eq!(rooms.room_expiry(end).map(|d| d.millis() - end.millis()), Some(7_000));
    }
}
