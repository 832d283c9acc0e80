//! The call lifecycle's use cases: accept, decline, end, the server's timers and LiveKit's
//! webhooks. Each decides in the domain ([`Call::apply`]) and stores the outcome with its
//! events and next deadline in one step that racing replicas cannot both win.

use super::{Error, Result, Service};
use crate::domain::{
    Actor, Call, CallId, CallStatus, DeclineReason, EndReason, Event, LiveKitRoom, Outcome, Refusal, Timestamp,
    Transition, UserId,
};
use crate::events::Audience;
use crate::livekit::{Action, Grant, Notice, Rejected};
use crate::store::{CallChange, CallUpdate, Due, Scheduled, StoreError};
use crate::telemetry::metrics;
use std::time::Duration;

/// How many deadlines one timer pass claims at most; the rest wait for the next pass.
const DUE_BATCH: usize = 200;

/// How long a claimed deadline is this replica's: if it dies holding it, another replica
/// fires it this much later (plus a poll), within the 2 seconds the contract allows a
/// timer. A claim that runs out while still being worked on is harmless: the change
/// guarded by it no longer applies.
const CLAIM_LEASE: Duration = Duration::from_secs(1);

/// Conditions a change is applied under, besides the call's state.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Guard<'a> {
    /// A timer's claim: its deadline must still be the stored one.
    claim: Option<Timestamp>,
    /// A webhook's id: applied once.
    once: Option<&'a str>,
}

/// A call after a transition was asked of it.
#[derive(Debug)]
struct Transitioned {
    call: Call,
    /// Whether this request made the change (and published its events).
    applied: bool,
}

/// What a verified webhook did; a bounded metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookOutcome {
    Applied,
    Ignored,
    Duplicate,
}

impl WebhookOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Ignored => "ignored",
            Self::Duplicate => "duplicate",
        }
    }
}

/// A change that did not happen for a reason other than the call's state.
enum Skipped {
    Unclaimed,
    Duplicate,
}

impl Service {
    /// The callee answers: the call and the callee's grant. Idempotent.
    pub async fn accept_call(&self, actor: Actor, id: CallId, named: Option<UserId>) -> Result<(Call, Grant)> {
        let call = self.call(actor, id).await?;
        let by = Self::act(actor, named, "userId")?;
        let call = self.answer(call, by).await?;
        let callee = self.user(by).await?;
        let grant = self.tokens.grant(callee.id, &callee.name, call.room_name)?;
        Ok((call, grant))
    }

    /// `by` answers the call (as `/accept`, or the callee's token request, does).
    pub(super) async fn answer(&self, call: Call, by: UserId) -> Result<Call> {
        Ok(settled(self.try_transition(call, Transition::Accept { by }, Guard::default()).await?))
    }

    /// The callee declines a ringing call; declining an ended call returns it as it is.
    pub async fn decline_call(
        &self,
        actor: Actor,
        id: CallId,
        named: Option<UserId>,
        reason: DeclineReason,
    ) -> Result<Call> {
        let call = self.call(actor, id).await?;
        let by = Self::act(actor, named, "userId")?;
        Ok(settled(self.try_transition(call, Transition::Decline { by, reason }, Guard::default()).await?))
    }

    /// Ends a call (by one of its users, or, with `AUTH=open`, by no one named); ending an
    /// ended call returns it as it is and announces nothing.
    pub async fn end_call(&self, actor: Actor, id: CallId, named: Option<UserId>) -> Result<Call> {
        let call = self.call(actor, id).await?;
        let by = match actor {
            Actor::Anyone => named,
            _ => Some(Self::act(actor, named, "userId")?),
        };
        Ok(settled(self.try_transition(call, Transition::End { by }, Guard::default()).await?))
    }

    /// Claims the deadlines that are due and acts on each: a ringing or answered call's
    /// timer ends it, an ended call or an inactive room is deleted (retention). Any replica
    /// may run this at any time; each deadline is claimed by one, and fires once. An entry
    /// that cannot be acted on (its document is gone or unreadable) is taken off the
    /// schedule, never blocking the others. Returns how many fired.
    pub async fn fire_due(&self) -> Result<usize> {
        let mut fired = 0;
        for due in self.store.claim_due(DUE_BATCH, CLAIM_LEASE).await? {
            match self.fire(&due).await {
                Ok(changed) => fired += usize::from(changed),
                // Logged and counted where it was found; kept aside for an operator.
                Err(Error::Store(StoreError::Corrupt(_))) => {
                    tracing::warn!(entry = due.entry, "a deadline that cannot be acted on is parked");
                    self.store.unschedule(&due.entry, due.claim, true).await?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(fired)
    }

    /// Acts on one claimed deadline; whether it changed anything. A deadline whose call or
    /// room is gone is taken off the schedule (nothing deletes one without the other).
    async fn fire(&self, due: &Due) -> Result<bool> {
        let owner = match due.what()? {
            Scheduled::Room(id) => self.store.room(id).await?.map(LiveKitRoom::Room),
            Scheduled::Call(id) => self.store.call(id).await?.map(LiveKitRoom::Call),
        };
        let call = match owner {
            None => {
                crate::store::report_corrupt(&due.entry, "a deadline without its document");
                self.store.unschedule(&due.entry, due.claim, false).await?;
                return Ok(false);
            }
            Some(LiveKitRoom::Room(room)) => {
                let deleted = self.store.delete_room(&room, due.claim).await?;
                return Ok(deleted && retained("room"));
            }
            Some(LiveKitRoom::Call(call)) if call.status == CallStatus::Ended => {
                let deleted = self.store.delete_call(&call, due.claim).await?;
                return Ok(deleted && retained("call"));
            }
            Some(LiveKitRoom::Call(call)) => call,
        };
        let guard = Guard { claim: Some(due.claim), once: None };
        match self.try_transition(call, Transition::Deadline, guard).await {
            // A skipped claim (the deadline moved meanwhile) is no change either.
            Ok(Ok(Transitioned { call, applied: true })) => {
                let late = Timestamp::now().millis().saturating_sub(due.at.millis()).max(0);
                let kind = call.end_reason.map_or("other", EndReason::as_str);
                metrics::timer_fired(kind, Duration::from_millis(late.unsigned_abs()));
                Ok(true)
            }
            Ok(_) | Err(Error::CallNotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Verifies a LiveKit webhook on its exact raw body and acts on it.
    pub async fn livekit_webhook(&self, body: &[u8], authorization: Option<&str>) -> Result<WebhookOutcome> {
        let verified = std::str::from_utf8(body)
            .map_err(|_| Rejected::Signature)
            .and_then(|body| self.webhooks.verify(body, authorization));
        let notice = verified.inspect_err(|e| {
            metrics::webhook("other", if matches!(e, Rejected::Signature) { "invalid_signature" } else { "failed" });
        })?;
        let outcome = self.livekit_notice(&notice).await;
        metrics::webhook(notice.kind, outcome.as_ref().map_or("failed", |o| o.as_str()));
        outcome
    }

    /// The callee joining a ringing call's LiveKit room accepts it; a call's room finishing
    /// ends it. A redelivery (same id) has no second effect.
    async fn livekit_notice(&self, notice: &Notice) -> Result<WebhookOutcome> {
        let (room, transition) = match notice.action {
            Action::ParticipantJoined { room, identity } => (room, Transition::Accept { by: identity }),
            Action::RoomFinished { room } => (room, Transition::RoomFinished),
            Action::None => return Ok(WebhookOutcome::Ignored),
        };
        let Some(LiveKitRoom::Call(call)) = self.store.livekit_room(room).await? else {
            return Ok(WebhookOutcome::Ignored);
        };
        if matches!(transition, Transition::Accept { by } if by != call.to_user_id) {
            return Ok(WebhookOutcome::Ignored);
        }
        let once = (!notice.id.is_empty()).then_some(notice.id.as_str());
        // A redelivery usually finds nothing left to do; it is told apart by its id. (Two
        // deliveries at once are told apart by the change itself, which applies an id once.)
        if let Some(id) = once
            && self.store.delivered(id).await?
        {
            return Ok(WebhookOutcome::Duplicate);
        }
        match self.try_transition(call, transition, Guard { claim: None, once }).await {
            Ok(Ok(Transitioned { applied: true, .. })) => Ok(WebhookOutcome::Applied),
            Ok(Err(Skipped::Duplicate)) => Ok(WebhookOutcome::Duplicate),
            Ok(_) | Err(Error::CallEnded(_)) => Ok(WebhookOutcome::Ignored),
            Err(e) => Err(e),
        }
    }

    /// Decides on `call` as read, and stores the outcome only if the call has not moved on
    /// meanwhile; otherwise decides again on what it became. Every transition moves the
    /// status forward, so this ends after at most as many rounds as there are statuses.
    async fn try_transition(
        &self,
        mut call: Call,
        transition: Transition,
        guard: Guard<'_>,
    ) -> Result<std::result::Result<Transitioned, Skipped>> {
        for _ in CallStatus::ALL {
            let (after, events) = match call.apply(transition, Timestamp::now()) {
                Err(refusal) => return Err(refused(refusal, call.id)),
                Ok(Outcome::Unchanged) => return Ok(Ok(Transitioned { call, applied: false })),
                Ok(Outcome::Changed { call, events }) => (call, events),
            };
            let parties = [after.from_user_id, after.to_user_id];
            let encoded: Vec<String> = events.iter().map(|e| self.envelope(e, Audience::Users(&parties))).collect();
            let change = CallChange {
                from: call.status,
                call: &after,
                deadline: self.timeouts.deadline(&after),
                claim: guard.claim,
                once: guard.once,
                events: &encoded,
            };
            match self.store.update_call(change).await? {
                CallUpdate::Applied => {
                    record(&after, &events);
                    return Ok(Ok(Transitioned { call: after, applied: true }));
                }
                CallUpdate::Stale(Some(now)) => call = now,
                CallUpdate::Stale(None) => return Err(Error::CallNotFound(call.id)),
                CallUpdate::Unclaimed => return Ok(Err(Skipped::Unclaimed)),
                CallUpdate::Duplicate => return Ok(Err(Skipped::Duplicate)),
            }
        }
        Err(StoreError::Unreachable(format!("call {} kept changing under the update", call.id)).into())
    }
}

/// A request's transition: no timer claim or delivery id, so never skipped.
fn settled(outcome: std::result::Result<Transitioned, Skipped>) -> Call {
    match outcome {
        Ok(done) => done.call,
        Err(Skipped::Unclaimed | Skipped::Duplicate) => unreachable!("a request carries no claim and no delivery id"),
    }
}

fn refused(refusal: Refusal, call: CallId) -> Error {
    match refusal {
        Refusal::NotTheCallee => Error::NotTheCallee(call),
        Refusal::NotAParticipant => Error::NotInCall(call),
        Refusal::Ended => Error::CallEnded(call),
        Refusal::AlreadyAccepted => Error::CallAlreadyAccepted(call),
    }
}

/// Counts an applied transition: its events, and the call's ring time or duration.
fn record(call: &Call, events: &[Event]) {
    for event in events {
        metrics::event_published(event.name());
    }
    let seconds = |from: Timestamp, to: Timestamp| {
        Duration::from_millis(to.millis().saturating_sub(from.millis()).max(0).unsigned_abs())
    };
    match (call.status, call.answer_time, call.end_time, call.end_reason) {
        (CallStatus::Accepted, Some(answer), _, _) => metrics::call_accepted(seconds(call.start_time, answer)),
        (CallStatus::Ended, answer, Some(end), Some(reason)) => {
            metrics::call_ended(reason.as_str(), answer.map(|a| seconds(a, end)));
        }
        _ => {}
    }
}

/// Counts a deletion by retention; true.
fn retained(kind: &'static str) -> bool {
    metrics::retention_deleted(kind);
    true
}
