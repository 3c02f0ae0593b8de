//! openIMIS claims' commands, whichever transport brought them: reference data upserts, the claim
//! lifecycle (enter, submit, feedback and review, process, valuate, restore) and attachments.
//!
//! A caller with a health facility ([`crate::Caller::health_facility`]) acts only on that
//! facility's claims: another facility's claim is a 403 (in a bulk command, that claim's answer).
//! Bulk commands answer each claim in the order asked ([`BulkAnswer`]); each claim is its own
//! append, so one refused claim takes nothing of the others.

mod attachments;
mod entry;
mod process;
mod reference;
mod review;
mod submit;

pub use attachments::AttachmentInput;
pub use process::ValuationInput;
pub use reference::ReferenceEntry;
pub use review::step_command;

use std::time::Duration;

use careledger_domain::claims::{Claim, ClaimError, ClaimFacts, LineState};
use careledger_domain::{Aggregate, Ctx};
use careledger_events::claims::{ClaimEvent, claim_stream};
use careledger_projections::Projections;
use careledger_projections::claims::ReferenceCache;
use careledger_store::{AppendRequest, EventStore, ExpectedVersion, KeyClaim, StoreError, StreamAppend};
use chrono::Utc;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{AggregateCache, Answer, AppError, CommandCtx, CommitError, Invalid, MAX_ATTEMPTS, catch_up};

/// Set-invariant scope: the code of a live claim (`<facility>\u{1f}<code>` when codes are unique
/// per facility).
pub const CLAIM_CODE_SCOPE: &str = "claim-code";

/// Most claims one bulk command names.
pub const MAX_BULK: usize = 1000;

pub use careledger_domain::claims::MAX_LINES;

/// What the claims context needs to run its commands.
pub struct Claims<'a> {
    pub store: &'a EventStore,
    pub projections: &'a Projections,
    /// Recently used claims, kept folded: a claim's commands take turns in this process.
    pub claims: &'a AggregateCache<Claim>,
    /// The reference data submissions are checked against (see `ReferenceCache`).
    pub reference: &'a ReferenceCache,
    /// Whether a claim's code is unique per health facility (else across the scheme).
    pub code_per_facility: bool,
    /// How long a valuation waits for the read model that finds its claims.
    pub query_wait: Duration,
    /// This server is an offline node with a master (`CARELEDGER_SYNC_MASTER`): it enters and
    /// submits claims, and leaves feedback, review, processing and valuation to the master,
    /// whose decisions come back with the sync.
    pub offline_node: bool,
}

/// What a bulk command did to each claim named, in the order asked, and the last position any
/// of them reached.
#[derive(Debug)]
pub struct BulkAnswer {
    pub claims: Vec<(Uuid, Result<Answer, AppError>)>,
    pub position: i64,
}

/// A refused claim command (an invalid entry keeps its JSON path).
fn refused(e: ClaimError) -> AppError {
    match e.entry() {
        Some(entry) => AppError::Invalid(vec![Invalid::field(entry, "invalid", e.to_string())]),
        None => AppError::refused(e.refusal(), e.to_string()),
    }
}

fn decision_ctx() -> Ctx {
    Ctx { now: Utc::now(), seed: rand::random() }
}

fn amount(a: Option<careledger_events::claims::Amount>) -> Value {
    a.map_or(Value::Null, |a| json!(a))
}

fn line_summary(l: &LineState) -> Value {
    json!({
        "index": l.index,
        "code": l.input.code,
        "qty_provided": l.input.qty_provided,
        "price_asked": l.input.price_asked,
        "status": l.status.map(|s| s.code()),
        "rejection_reason": l.status.map(|_| l.rejection_reason),
        "qty_approved": amount(l.qty_approved),
        "price_adjusted": amount(l.price_adjusted),
        "price_approved": amount(l.price_approved),
        "price_valuated": amount(l.price_valuated),
    })
}

/// What a command answers about a claim, from its state after the command.
fn claim_summary(facts: &ClaimFacts) -> Value {
    let lines = |kind| facts.lines.iter().filter(|l| l.kind == kind).map(line_summary).collect::<Vec<_>>();
    json!({
        "uuid": facts.id,
        "code": facts.data.code,
        "health_facility": facts.data.health_facility,
        "insuree": facts.data.insuree,
        "status": facts.status.code(),
        "feedback_status": facts.feedback_status.code(),
        "review_status": facts.review_status.code(),
        "rejection_reason": facts.rejection_reason,
        "category": facts.category.map(|c| c.name()),
        "claimed": facts.claimed,
        "approved": amount(facts.approved),
        "valuated": amount(facts.valuated),
        "remunerated": amount(facts.remunerated),
        "restored_from": facts.restored_from,
        "restored_as": facts.restored_as,
        "items": lines(careledger_events::claims::LineKind::Item),
        "services": lines(careledger_events::claims::LineKind::Service),
        "attachments": facts.attachments,
    })
}

fn summary(claim: &Claim) -> Value {
    claim.0.as_ref().map_or(Value::Null, claim_summary)
}

/// How a command on one claim runs.
struct OnClaim<'a> {
    claim_id: Uuid,
    ctx: &'a CommandCtx,
    /// The command creates the claim: 201 when it appended.
    creates: bool,
    /// Another stream appended together with the claim's, and its events (restore).
    companion: Option<(String, ExpectedVersion)>,
}

impl<'a> OnClaim<'a> {
    fn new(claim_id: Uuid, ctx: &'a CommandCtx) -> Self {
        OnClaim { claim_id, ctx, creates: false, companion: None }
    }

    fn creating(self) -> Self {
        OnClaim { creates: true, ..self }
    }

    /// The events decided for a second stream go to `stream`, which must be new.
    fn with_new_stream(self, stream: String) -> Self {
        OnClaim { companion: Some((stream, ExpectedVersion::Exact(0))), ..self }
    }
}

/// A decision of the claim's own stream only.
fn alone(
    decide: impl Fn(&Claim, &Ctx) -> Result<Vec<ClaimEvent>, ClaimError>,
) -> impl Fn(&Claim, &Ctx) -> Result<(Vec<ClaimEvent>, Vec<ClaimEvent>), ClaimError> {
    move |claim, ctx| decide(claim, ctx).map(|events| (events, vec![]))
}

impl Claims<'_> {
    /// 409 on an offline node for a command its master runs (feedback, review, processing,
    /// valuation): two servers deciding one claim would disagree, and the master's decision is
    /// the scheme's.
    fn masters_only(&self, command: &str) -> Result<(), AppError> {
        if self.offline_node {
            return Err(AppError::Conflict(format!(
                "{command} runs on the central server: this server is an offline node (CARELEDGER_SYNC_MASTER), \
                 whose claims' feedback, review, processing and valuation come back from the master with the sync"
            )));
        }
        Ok(())
    }

    /// The key a claim's code takes in [`CLAIM_CODE_SCOPE`].
    pub(crate) fn code_key(&self, facility: &str, code: &str) -> String {
        if self.code_per_facility { format!("{facility}\u{1f}{code}") } else { code.to_string() }
    }

    /// The code key the events take, if they create or update a claim.
    fn taken_code(&self, events: &[ClaimEvent]) -> Option<String> {
        events.iter().rev().find_map(|e| match e {
            ClaimEvent::ClaimCreated(r) | ClaimEvent::ClaimUpdated(r) => {
                Some(self.code_key(&r.data.health_facility, &r.data.code))
            }
            _ => None,
        })
    }

    /// Frees `key` if the claim holding it no longer uses it (deleted, restored, or its code
    /// changed): true when freed, so that the command may try again.
    pub(crate) async fn free_stale_code(&self, key: &str) -> Result<bool, AppError> {
        let Some(owner) = self.store.key_owner(CLAIM_CODE_SCOPE, key).await? else { return Ok(true) };
        let holder = self.claims.lock(self.store, &owner).await?;
        let still_used = holder
            .state
            .0
            .as_ref()
            .is_some_and(|f| f.is_live() && self.code_key(&f.data.health_facility, &f.data.code) == key);
        drop(holder);
        if still_used {
            return Ok(false);
        }
        self.store.release_key(CLAIM_CODE_SCOPE, key, &owner).await?;
        Ok(true)
    }

    /// Runs a decision on one claim: lock its stream (commands on a claim take turns), decide on
    /// the claim as this process holds it (no read of the log when it holds it), append at the
    /// version decided on with the code key its events take, retry when a concurrent writer won
    /// (the retry reads the log). `decide` also returns the events of a companion stream
    /// (restore's new claim). The answer is the claim after the command: 201 for a command that
    /// creates and appended, else 200.
    async fn on_claim(
        &self,
        run: OnClaim<'_>,
        decide: impl Fn(&Claim, &Ctx) -> Result<(Vec<ClaimEvent>, Vec<ClaimEvent>), ClaimError>,
    ) -> Result<Answer, AppError> {
        let stream = claim_stream(run.claim_id);
        let decision = decision_ctx();
        for _ in 0..MAX_ATTEMPTS {
            if let Some(answer) = run.ctx.earlier_answer(self.store).await? {
                return Ok(answer);
            }
            // the claim as held: a decision that appends is checked by the append's expected version
            let (mut guard, read) = self.claims.lock_held(self.store, &stream).await?;
            let mut decided = decide(&guard.state, &decision);
            let appends = matches!(&decided, Ok((events, companion)) if !events.is_empty() || !companion.is_empty());
            if !appends && !read && catch_up(&mut *guard, self.store, &stream).await? {
                // a refusal or an answer without an append is of the claim as it is in the log
                decided = decide(&guard.state, &decision);
            }
            let (events, companion) = decided.map_err(refused)?;
            if events.is_empty() && companion.is_empty() {
                return Ok(Answer::ok(summary(&guard.state)).at(self.store.head().await?));
            }
            let version = guard.version;
            let mut streams = vec![StreamAppend {
                stream: stream.clone(),
                expected: ExpectedVersion::Exact(version),
                events: run.ctx.events(&events),
            }];
            // the claim that answers: the companion (a restored copy) when there is one
            let (answer_claim, owner, code) = match &run.companion {
                Some((other, expected)) => {
                    streams.push(StreamAppend {
                        stream: other.clone(),
                        expected: *expected,
                        events: run.ctx.events(&companion),
                    });
                    (Claim::from_events(&companion), other.clone(), self.taken_code(&companion))
                }
                None => {
                    let after = events.iter().fold(guard.state.clone(), |c, e| c.evolve(e));
                    (after, stream.clone(), self.taken_code(&events))
                }
            };
            let claims = code.iter().map(|key| KeyClaim {
                scope: CLAIM_CODE_SCOPE.into(),
                keys: vec![key.clone()],
                owner: owner.clone(),
            });
            if let (Some(_), Some(key)) = (&run.companion, &code) {
                // restore: the rejected claim hands its code to its copy in this very append
                self.store.release_key(CLAIM_CODE_SCOPE, key, &stream).await?;
            }
            let request = AppendRequest { streams, claims: claims.collect(), idempotency: None };
            let body = summary(&answer_claim);
            let answer = if run.creates || run.companion.is_some() { Answer::created(body) } else { Answer::ok(body) };
            match run.ctx.commit(self.store, request, answer).await {
                Ok((outcome, answer)) => {
                    let version = outcome.versions.first().copied().unwrap_or(version);
                    guard.advance(&events, version);
                    return Ok(answer);
                }
                Err(CommitError::Retry(StoreError::KeysTaken { .. })) => {
                    guard.reset();
                    drop(guard);
                    let key = code.unwrap_or_default();
                    if !self.free_stale_code(&key).await? {
                        if let Some(answer) = run.ctx.earlier_answer(self.store).await? {
                            return Ok(answer);
                        }
                        return Err(refused(ClaimError::DuplicateCode));
                    }
                }
                Err(other) => {
                    guard.reset();
                    if let Some(answer) = other.settled() {
                        return answer;
                    }
                }
            }
        }
        Err(AppError::Conflict(format!("{} kept conflicting with concurrent writers; retry", run.ctx.command)))
    }

    /// A command on one claim decided on its own stream alone.
    async fn on_one_claim(
        &self,
        ctx: &CommandCtx,
        claim_id: Uuid,
        decide: impl Fn(&Claim, &Ctx) -> Result<Vec<ClaimEvent>, ClaimError>,
    ) -> Result<Answer, AppError> {
        self.on_claim(OnClaim::new(claim_id, ctx), alone(decide)).await
    }

    /// A bulk command whose claims are each decided on their own stream alone.
    async fn bulk_command(
        &self,
        ctx: CommandCtx,
        uuids: Vec<Uuid>,
        decide: impl Fn(&Claim, &Ctx) -> Result<Vec<ClaimEvent>, ClaimError>,
    ) -> Result<BulkAnswer, AppError> {
        let ctx = ctx.without_idempotency();
        bulk(uuids, |id| self.on_claim(OnClaim::new(id, &ctx), alone(&decide))).await
    }
}

/// Runs `one` for every claim named and answers each: done with the claim, or why not. A failure
/// of the service itself (not a claim's answer) ends the command with it.
async fn bulk<F, Fut>(uuids: Vec<Uuid>, mut one: F) -> Result<BulkAnswer, AppError>
where
    F: FnMut(Uuid) -> Fut,
    Fut: Future<Output = Result<Answer, AppError>>,
{
    let mut claims = Vec::with_capacity(uuids.len());
    let mut position = 0;
    for uuid in uuids {
        match one(uuid).await {
            Ok(done) => {
                position = position.max(done.position.unwrap_or(0));
                claims.push((uuid, Ok(done)));
            }
            Err(e) if e.is_failure() => return Err(e),
            Err(e) => claims.push((uuid, Err(e))),
        }
    }
    Ok(BulkAnswer { claims, position })
}
