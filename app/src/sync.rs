//! Importing a peer's resources (issue #21): the insurees a node enrolled and the policies it
//! enrolled them in, arriving as one FHIR `transaction` Bundle, appended as the same
//! `InsureeRegistered` (with the batch's `CodeAssigned`) and `PolicyEnrolled` events the
//! enrolment commands append, with metadata naming the peer and the Bundle.
//!
//! Resources are matched by identifiers, never by ids: an identifier of another server
//! (`system|value`) belongs to at most one resource here, a set invariant kept in the store's
//! `unique_keys` ([`IDENTIFIER_SCOPE`], owner `<Type>/<local id>`) and claimed in the importing
//! append, so two imports racing cannot both create the resource. (DESIGN.md listed the
//! identifier map among the read models: a read model is behind by design and cannot decide
//! that.) An identifier of this server's own system names the local id itself.
//!
//! A new resource keeps the sender's id where no resource here has it, and otherwise gets a new
//! UUID; either way it keeps the sender's id as an identifier of the sender's system. References
//! are translated through identifiers before anything is appended. The Bundle is all or nothing:
//! one append, refused whole (422 naming the entry) when one entry breaks a rule. Its identifier
//! is the idempotency key: importing it again answers as the first time and appends nothing, and
//! a resource already imported by an earlier Bundle is known and appends nothing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use careledger_domain::claims::{Claim, ClaimError, CreateClaim, ReceiveOutcome, TakeNodeChange, TakeNodeDeletion};
use careledger_domain::codes::{CodeBatch, ReceiveReservation};
use careledger_domain::insurees::{EnrolInPolicy, Insuree, InsureeError, Policy, RegisterInsuree};
use careledger_domain::{Aggregate, Ctx};
use careledger_events::Identifier;
use careledger_events::RecordedEvent;
use careledger_events::claims::{
    Amount, ClaimData, ClaimEvent, ClaimOutcome, ClaimStatus, ConflictRule, Gender, LineOutcome, LineStatus,
    ServiceCategory, claim_stream,
};
use careledger_events::codes::{CodeEvent, CodeFormat, HolderType, batch_stream};
use careledger_events::insurees::InsureeEvent;
use careledger_events::insurees::{insuree_stream, policy_stream};
use careledger_projections::Projections;
use careledger_projections::claims::Registers;
use careledger_projections::codes::CodeQueries;
use careledger_store::{AppendRequest, EventStore, ExpectedVersion, KeyClaim, StoreError, StreamAppend};
use chrono::{NaiveDate, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::claims::{CLAIM_CODE_SCOPE, Claims, ReferenceEntry};
use crate::codes::{CODE_SCOPE, INSUREE_SCOPE};
use crate::{AggregateCache, Answer, AppError, CommandCtx, CommitError, Invalid, Loaded, MAX_ATTEMPTS, fold, load};

/// The set invariant "an identifier of another server names one resource here": key
/// `system|value`, owner `<Type>/<local id>`.
pub const IDENTIFIER_SCOPE: &str = "fhir-identifier";

/// openIMIS' status of an entered claim (`ClaimResponse` adjudication category).
pub const ENTERED: i32 = 2;

/// A Bundle to import, read by the transport: the sender's system and the Bundle's identifier,
/// and its entries in order.
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingBundle {
    /// The sender's system: the Bundle's `identifier.system`.
    pub sender: String,
    /// The Bundle's `identifier.value`.
    pub bundle: String,
    pub entries: Vec<Incoming>,
}

/// One entry's resource.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Patient(IncomingPatient),
    Coverage(IncomingCoverage),
    Reservation(IncomingReservation),
    Claim(IncomingClaim),
    ClaimResponse(IncomingClaimResponse),
    Register(IncomingRegister),
    /// A claim the sender deleted (a `DELETE` entry, by the sender's identifier of it), and the
    /// sender's log position of the deletion (`request.ifMatch`).
    Deletion(Identifier, Option<i64>),
}

/// An entry of the master's register (a health facility, a medical item or service, a price
/// list, a product), as the upsert API reads it: a node takes it from its master only.
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingRegister {
    pub identifiers: Vec<Identifier>,
    pub entry: ReferenceEntry,
    /// The master's log position of this version of the entry (`meta.versionId`).
    pub position: Option<i64>,
}

/// A claim as a node entered it (a `Claim`): created here as entered, with the node's id as an
/// identifier of the node's system.
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingClaim {
    pub identifiers: Vec<Identifier>,
    pub data: ClaimData,
    /// The sender's log position of this version of the claim (`meta.versionId`).
    pub position: Option<i64>,
}

/// Where a claim stands on the sender (a `ClaimResponse`): a claim the node submitted is
/// submitted here too once imported, and this server's rules decide it (the master decides).
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingClaimResponse {
    pub identifiers: Vec<Identifier>,
    /// The claim it answers, by one of its identifiers (`ClaimResponse.request.identifier`).
    pub request: Identifier,
    /// openIMIS' claim status on the sender (2 entered, 4 checked, 1 rejected, ...).
    pub status: i32,
    /// What the sender decided, as careledger's figures carry it (from a master: mirrored on a
    /// node).
    pub rejection_reason: Option<i32>,
    pub category: Option<String>,
    pub approved: Option<Amount>,
    pub valuated: Option<Amount>,
    pub remunerated: Option<Amount>,
    /// Each line's, by its `sequence` in the Claim (items first, then services, from 1).
    pub lines: Vec<IncomingLineOutcome>,
    /// The sender's log position of this version of the claim (`meta.versionId`).
    pub position: Option<i64>,
}

/// A line of a `ClaimResponse`: its status and every stage's figure.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IncomingLineOutcome {
    pub sequence: usize,
    pub status: Option<i64>,
    pub rejection_reason: i32,
    pub qty_approved: Option<Amount>,
    pub price_adjusted: Option<Amount>,
    pub price_approved: Option<Amount>,
    pub price_valuated: Option<Amount>,
}

/// Codes the sender reserved to a holder for this server (a `Basic`): this server's copy of the
/// batch gets them, reserved to the holder, to hand out here and nowhere else.
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingReservation {
    pub identifiers: Vec<Identifier>,
    pub batch_id: Uuid,
    pub reservation_id: Uuid,
    pub holder_type: HolderType,
    pub holder_code: String,
    /// The server the codes were reserved for: this one, or the Bundle is refused.
    pub for_server: String,
    pub format: CodeFormat,
    pub codes: Vec<String>,
}

/// An insuree as a peer sends it (a `Patient`).
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingPatient {
    /// Its identifiers with a system (its id on the sender, and any other server's).
    pub identifiers: Vec<Identifier>,
    /// The insurance number (the identifier typed `Code`).
    pub chfid: String,
    pub last_name: String,
    pub other_names: String,
    pub birth_date: NaiveDate,
    pub gender: Gender,
    pub phone: Option<String>,
    pub location: Option<String>,
    /// The head of the family the insuree belongs to, by one of its identifiers: an insuree of
    /// this Bundle before it, or one this server holds.
    pub family_head: Option<Identifier>,
}

/// A policy as a peer sends it (a `Coverage`).
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingCoverage {
    pub identifiers: Vec<Identifier>,
    /// The beneficiary, by one of its identifiers.
    pub beneficiary: Identifier,
    pub product_code: String,
    pub enrol_date: NaiveDate,
    pub effective_date: NaiveDate,
    pub expiry_date: NaiveDate,
}

impl Incoming {
    fn identifiers(&self) -> &[Identifier] {
        match self {
            Incoming::Patient(p) => &p.identifiers,
            Incoming::Coverage(c) => &c.identifiers,
            Incoming::Reservation(r) => &r.identifiers,
            Incoming::Claim(c) => &c.identifiers,
            Incoming::ClaimResponse(r) => &r.identifiers,
            Incoming::Register(r) => &r.identifiers,
            Incoming::Deletion(identifier, _) => std::slice::from_ref(identifier),
        }
    }

    fn resource_type(&self) -> &'static str {
        match self {
            Incoming::Patient(_) => "Patient",
            Incoming::Coverage(_) => "Coverage",
            Incoming::Reservation(_) => "Basic",
            Incoming::Claim(_) => "Claim",
            Incoming::ClaimResponse(_) => "ClaimResponse",
            Incoming::Register(_) => "Basic",
            Incoming::Deletion(..) => "Claim",
        }
    }
}

/// What importing needs.
pub struct Importer<'a> {
    pub store: &'a EventStore,
    pub projections: &'a Projections,
    /// The code batches, kept folded (shared with the codes context): reset for the batches an
    /// import assigned codes of.
    pub batches: &'a AggregateCache<CodeBatch>,
    pub query_wait: Duration,
    /// This server's own system.
    pub own_system: &'a str,
    /// The server this one syncs with as its master (an offline node's central server), if
    /// any: the insurees it numbered are kept here as its register, and its claims stay there.
    pub master: Option<&'a str>,
    /// The claims context: imported claims the sender submitted are submitted here.
    pub claims: &'a Claims<'a>,
}

/// Where one entry went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placed {
    /// A resource this server holds already: nothing to append.
    Known(Uuid),
    /// New here, under this id.
    New(Uuid),
    /// Not kept here, and why (a claim of the master's, on a node).
    Skipped(&'static str),
    /// An entry of the master's register, upserted when it differs from what is held.
    Register,
    /// A claim held here that the sender deleted.
    Deletion(Uuid),
    /// A claim the sender deleted that never reached here: its identifier is kept as deleted, so
    /// that the claim arriving later (an older sync file) is not created.
    Tombstone,
}

impl Placed {
    fn id(self) -> Uuid {
        match self {
            Placed::Known(id) | Placed::New(id) | Placed::Deletion(id) => id,
            Placed::Skipped(_) | Placed::Register | Placed::Tombstone => Uuid::nil(),
        }
    }
}

/// Why a node keeps no claim of its master's.
const MASTERS_CLAIM: &str = "a claim of the master server: a node keeps only the claims it entered";
/// Why a node takes no deletion from its master.
const MASTERS_DELETION: &str = "a claim the master deleted: a node deletes only what it deletes itself (a change it makes to the claim after this is recorded as a conflict on the master)";
/// Why a deletion appends no event.
const NOTHING_TO_DELETE: &str = "no claim of this identifier is held here: nothing to delete (the identifier is kept as deleted, so that the claim arriving later is not created)";
/// Why a claim is not created.
const DELETED_BY_SENDER: &str =
    "the sender deleted this claim (a deletion of it was imported before): it is not created";
/// The owner of a deleted claim's identifier that never reached here (a tombstone).
const DELETED_CLAIM: &str = "Claim/deleted";
/// Why a register entry is taken from the master only.
const NOT_MASTERS_REGISTER: &str =
    "an entry of the sender's register: this server takes reference data from its master only (CARELEDGER_SYNC_MASTER)";

/// Entry `index`'s element `path` breaks `rule`.
fn invalid(index: usize, path: &str, rule: &'static str, message: impl Into<String>) -> AppError {
    let at = if path.is_empty() {
        format!("Bundle.entry[{index}].resource")
    } else {
        format!("Bundle.entry[{index}].resource.{path}")
    };
    AppError::Invalid(vec![Invalid::field(at, rule, message)])
}

/// The events of an insuree this import registers, and the key that says it has its number;
/// `registered` keeps its state for the family members after it.
fn registered_insuree(
    registered: &mut HashMap<Uuid, Insuree>,
    claims: &mut Vec<KeyClaim>,
    streams: &mut Vec<StreamAppend>,
    ctx: &CommandCtx,
    id: Uuid,
    event: InsureeEvent,
) {
    let chfid = match &event {
        InsureeEvent::InsureeRegistered { insuree, .. } => insuree.chfid.clone(),
        InsureeEvent::PolicyEnrolled { .. } => String::new(),
    };
    registered.insert(id, Insuree::default().evolve(&event));
    claims.push(KeyClaim { scope: INSUREE_SCOPE.into(), keys: vec![id.to_string()], owner: chfid });
    streams.push(StreamAppend {
        stream: insuree_stream(id),
        expected: ExpectedVersion::Exact(0),
        events: ctx.events(&[event]),
    });
    streams.push(StreamAppend {
        stream: careledger_events::claims::insuree_stream(id),
        expected: ExpectedVersion::Exact(0),
        events: vec![],
    });
}

/// A claim rule an entry breaks, located in the entry.
fn claim_refused(index: usize, e: ClaimError) -> AppError {
    match e.refusal() {
        careledger_domain::Refusal::Conflict => AppError::Conflict(format!("Bundle.entry[{index}]: {e}")),
        careledger_domain::Refusal::Forbidden => AppError::Forbidden(format!("Bundle.entry[{index}]: {e}")),
        _ => {
            let message = match e.entry() {
                Some(entry) => format!("{e} (the claim's {})", entry.trim_start_matches("$.")),
                None => e.to_string(),
            };
            invalid(index, "", "rule", message)
        }
    }
}

/// An entry's answer that explains it (a transaction-response entry's `outcome`).
fn information(text: &str) -> serde_json::Value {
    json!({ "resourceType": "OperationOutcome", "issue": [{ "severity": "information", "code": "informational", "diagnostics": text }] })
}

/// The claim's events (if any) appended at the version they were decided on, saying which
/// version of the sender's they take (`position`); the note of the conflict they record, if one.
fn claim_append(
    streams: &mut Vec<StreamAppend>,
    ctx: &CommandCtx,
    (stream, version): (String, i64),
    events: &[ClaimEvent],
    position: Option<i64>,
) -> Option<serde_json::Value> {
    if !events.is_empty() {
        let events = versioned(ctx.events(events), position);
        streams.push(StreamAppend { stream, expected: ExpectedVersion::Exact(version), events });
    }
    conflict_note(events)
}

/// Events imported from a peer, each saying the peer's log position of the version it takes
/// (`metadata.origin.position`), so that an older version arriving later is known.
fn versioned(mut events: Vec<careledger_events::NewEvent>, position: Option<i64>) -> Vec<careledger_events::NewEvent> {
    for event in &mut events {
        if let Some(origin) = &mut event.metadata.origin {
            origin.position = position;
        }
    }
    events
}

/// The sender's position of the version held, when it is at least `position` (the version
/// arriving is not newer): the latest position any event of the stream took from `peer`.
fn newer_held(events: &[RecordedEvent], peer: &str, position: Option<i64>) -> Option<i64> {
    let position = position?;
    let held = events
        .iter()
        .filter_map(|e| e.metadata.origin.as_ref().filter(|o| o.peer == peer).and_then(|o| o.position))
        .max();
    held.filter(|held| *held >= position)
}

/// The answer to a version older than the one held: nothing is taken.
fn older(held: i64) -> serde_json::Value {
    information(&format!(
        "the version of position {held} on the sender, as new as this one or newer, is held already: this one is not taken"
    ))
}

/// What the entry's outcome says of a change a sync did not take (the rule of the conflict its
/// events record), if they record one.
fn conflict_note(events: &[ClaimEvent]) -> Option<serde_json::Value> {
    events.iter().find_map(|e| match e {
        ClaimEvent::ConflictRecorded(c) => Some(warning(match c.rule {
            ConflictRule::DecidedHere => {
                "this server submitted the claim: the change made on the node after that is not taken (it is recorded: GET /api/v1/sync/conflicts)"
            }
            ConflictRule::ReplacedByMaster => {
                "changed here after the master decided it: the master's claim replaces the change (recorded: GET /api/v1/sync/conflicts)"
            }
            ConflictRule::DeletedHere => "the claim was deleted here: the change is not taken (recorded: GET /api/v1/sync/conflicts)",
            ConflictRule::DeletedThere => {
                "this server submitted the claim: its deletion on the node is not taken, the claim stays (recorded: GET /api/v1/sync/conflicts)"
            }
        })),
        _ => None,
    })
}

/// An entry's answer that warns of a change not taken as sent.
fn warning(text: &str) -> serde_json::Value {
    json!({ "resourceType": "OperationOutcome", "issue": [{ "severity": "warning", "code": "conflict", "diagnostics": text }] })
}

/// What [`Importer::lookups`] read for a Bundle: the owners found of the identifier tokens asked,
/// and the streams found of those asked.
#[derive(Default)]
struct Lookups {
    owners: HashMap<String, String>,
    tokens: HashSet<String>,
    existing: HashSet<String>,
    streams: HashSet<String>,
}

/// The streams a resource of the entry's type with this id would take (a reservation takes none:
/// its id, the sender's event's, is never taken).
fn streams_of(incoming: &Incoming, id: Uuid) -> Vec<String> {
    match incoming {
        Incoming::Patient(_) => vec![insuree_stream(id), careledger_events::claims::insuree_stream(id)],
        Incoming::Coverage(_) => vec![policy_stream(id), careledger_events::claims::policy_stream(id)],
        Incoming::Claim(_) | Incoming::ClaimResponse(_) | Incoming::Deletion(..) => vec![claim_stream(id)],
        Incoming::Reservation(_) | Incoming::Register(_) => vec![],
    }
}

/// An enrolment rule an entry breaks, located in the entry's resource.
fn refused(index: usize, e: InsureeError) -> AppError {
    use InsureeError::*;
    let path = match &e {
        InvalidLastName => "name[0].family",
        InvalidOtherNames => "name[0].given[0]",
        InvalidPhone => "telecom[0].value",
        InvalidLocation => "address[0].text",
        InvalidBirthDate => "birthDate",
        UnknownCode { .. } | CodeNotReserved { .. } | CodeAssigned { .. } => "identifier",
        InvalidProduct | UnknownProduct => "class[0].value",
        InvalidPeriod { .. } | EffectiveBeforeEnrolment => "period",
        UnknownInsuree => "beneficiary",
        UnknownFamilyHead | HeadNotHead => "extension",
        _ => "",
    };
    match e.refusal() {
        careledger_domain::Refusal::Conflict => AppError::Conflict(format!("Bundle.entry[{index}]: {e}")),
        _ => invalid(index, path, "rule", e.to_string()),
    }
}

impl Importer<'_> {
    /// Imports the Bundle: one append of every new resource, or nothing.
    pub async fn import(&self, ctx: &CommandCtx, bundle: IncomingBundle) -> Result<Answer, AppError> {
        // the sender a Bundle names decides whose identifiers it speaks for and which claims it
        // may change: only that server itself (its token's subject) may name it
        if ctx.caller.id != bundle.sender {
            return Err(AppError::Forbidden(format!(
                "The Bundle says it comes from `{}` but this token was issued to `{}`: a Bundle is imported only with a token issued to its sender",
                bundle.sender, ctx.caller.id
            )));
        }
        if let Some(answer) = ctx.earlier_answer(self.store).await? {
            // a Bundle imported before: its claims may still wait for their submission here
            self.submit_submitted(ctx, &bundle, answer.position.unwrap_or(0)).await?;
            return Ok(answer);
        }
        // the codes and the register are read from the read models: once they hold every
        // change committed before this request
        let started_at = self.store.highest_position().await?;
        for model in ["codes", "claims"] {
            if !self.projections.wait_for_one(model, started_at, self.query_wait).await {
                return Err(AppError::Behind(started_at));
            }
        }
        for _ in 0..MAX_ATTEMPTS {
            let (request, answer, touched) = self.decide(ctx, &bundle).await?;
            match ctx.commit(self.store, request, answer).await {
                Ok((_, answer)) => {
                    self.forget(&touched).await;
                    self.submit_submitted(ctx, &bundle, answer.position.unwrap_or(0)).await?;
                    return Ok(answer);
                }
                Err(CommitError::Retry(StoreError::KeysTaken { scope, keys })) if scope == INSUREE_SCOPE => {
                    return Err(AppError::Conflict(format!(
                        "insuree {} already holds an insurance number",
                        keys.join(", ")
                    )));
                }
                Err(CommitError::Retry(StoreError::KeysTaken { scope, keys })) if scope == CLAIM_CODE_SCOPE => {
                    self.forget(&touched).await;
                    for key in &keys {
                        if !self.claims.free_stale_code(key).await? {
                            let code = key.rsplit('\u{1f}').next().unwrap_or(key);
                            return Err(AppError::Conflict(format!(
                                "claim code {code} is used by another claim here: the node's claim keeps its code, so change it there and sync again"
                            )));
                        }
                    }
                }
                Err(other) => {
                    self.forget(&touched).await;
                    if let Some(answer) = other.settled() {
                        return answer;
                    }
                }
            }
        }
        Err(AppError::Conflict("the import kept conflicting with concurrent writers; retry".into()))
    }

    /// Submits here the claims the sender had submitted and that are still entered here: this
    /// server's rules decide them (a node's checks are its own). Run after the import committed,
    /// and again whenever the same Bundle comes back (a crash between the two loses nothing).
    async fn submit_submitted(&self, ctx: &CommandCtx, bundle: &IncomingBundle, position: i64) -> Result<(), AppError> {
        if self.master == Some(bundle.sender.as_str()) {
            return Ok(());
        }
        let answered: Vec<&Identifier> = bundle
            .entries
            .iter()
            .filter_map(|incoming| match incoming {
                Incoming::ClaimResponse(r) if r.status != ENTERED => Some(&r.request),
                _ => None,
            })
            .collect();
        if answered.is_empty() {
            return Ok(());
        }
        // the claims they answer, as the import (or an earlier one) placed them: one query
        let tokens: HashSet<String> =
            answered.iter().filter(|i| i.system != self.own_system).map(|i| i.token()).collect();
        let owners = self.store.key_owners(IDENTIFIER_SCOPE, &tokens.iter().cloned().collect::<Vec<_>>()).await?;
        let lookups = Lookups { owners, tokens, ..Lookups::default() };
        let mut submitted = Vec::new();
        for identifier in answered {
            submitted.extend(self.known(&lookups, identifier, "Claim").await?);
        }
        if submitted.is_empty() {
            return Ok(());
        }
        for id in &submitted {
            // created by the import's append, which this process's cache did not see
            self.claims.claims.forget(&claim_stream(*id)).await;
        }
        // the submission reads the insurees and policies the import (or an earlier one) appended
        if !self.projections.wait_for_one("claims", position, self.query_wait).await {
            return Err(AppError::Behind(position));
        }
        // each claim answers for itself: one no longer entered here was submitted before (or
        // reviewed since), and is left as it is
        self.claims.submit(ctx.continued(), submitted).await?;
        Ok(())
    }

    /// The batches' cached states are behind what the import appended (or tried to).
    async fn forget(&self, streams: &[String]) {
        for stream in streams {
            if stream.starts_with("claims-claim-") {
                self.claims.claims.forget(stream).await;
            } else {
                self.batches.forget(stream).await;
            }
        }
    }

    /// A node's claim imported before, arriving again ([`TakeNodeChange`]): its new data while
    /// the claim is entered here, else the change recorded (`ConflictRecorded`), and the entry's
    /// outcome says so.
    #[allow(clippy::too_many_arguments)]
    async fn claim_changed(
        &self,
        ctx: &CommandCtx,
        peer: &str,
        index: usize,
        id: Uuid,
        incoming: &IncomingClaim,
        streams: &mut Vec<StreamAppend>,
        claims: &mut Vec<KeyClaim>,
    ) -> Result<Option<serde_json::Value>, AppError> {
        let stream = claim_stream(id);
        let events = self.history(&stream).await?;
        if let Some(held) = newer_held(&events, peer, incoming.position) {
            return Ok(Some(older(held)));
        }
        let Loaded { state, version, .. } = fold::<Claim>(&events)?;
        let command = TakeNodeChange {
            data: incoming.data.clone(),
            peer: peer.to_string(),
            facility: ctx.caller.health_facility.clone(),
        };
        let events = command.decide(&state, &Ctx { now: Utc::now(), seed: 0 }).map_err(|e| claim_refused(index, e))?;
        if events.iter().any(|e| matches!(e, ClaimEvent::ClaimUpdated(_))) {
            claims.push(KeyClaim {
                scope: CLAIM_CODE_SCOPE.into(),
                keys: vec![self.claims.code_key(&incoming.data.health_facility, &incoming.data.code)],
                owner: stream.clone(),
            });
        }
        Ok(claim_append(streams, ctx, (stream, version), &events, incoming.position))
    }

    /// A stream's events, read once: its version, its last event, the state they fold into and
    /// the versions taken from each peer all come from them.
    async fn history(&self, stream: &str) -> Result<Vec<RecordedEvent>, AppError> {
        let mut events = Vec::new();
        loop {
            let page = self.store.read_stream(stream, events.len() as i64, 1000).await?;
            let full = page.len() == 1000;
            events.extend(page);
            if !full {
                return Ok(events);
            }
        }
    }

    /// A node's claim the node deleted ([`TakeNodeDeletion`]): deleted while entered here, else
    /// the deletion recorded, and the entry's outcome says so.
    async fn claim_deleted(
        &self,
        ctx: &CommandCtx,
        peer: &str,
        index: usize,
        (id, position): (Uuid, Option<i64>),
        streams: &mut Vec<StreamAppend>,
    ) -> Result<Option<serde_json::Value>, AppError> {
        let stream = claim_stream(id);
        let events = self.history(&stream).await?;
        if let Some(held) = newer_held(&events, peer, position) {
            return Ok(Some(older(held)));
        }
        let Loaded { state, version, .. } = fold::<Claim>(&events)?;
        let command = TakeNodeDeletion { peer: peer.to_string(), facility: ctx.caller.health_facility.clone() };
        let events = command.decide(&state, &Ctx { now: Utc::now(), seed: 0 }).map_err(|e| claim_refused(index, e))?;
        Ok(claim_append(streams, ctx, (stream, version), &events, position))
    }

    /// On a node: the master's decision of a claim this node entered ([`ReceiveOutcome`]),
    /// mirrored unless the claim already stands so; a change of the node's it replaces, or a
    /// decision of a claim deleted here, is recorded and said in the entry's outcome.
    #[allow(clippy::too_many_arguments)]
    async fn outcome_received(
        &self,
        ctx: &CommandCtx,
        peer: &str,
        index: usize,
        id: Uuid,
        data: &ClaimData,
        response: &IncomingClaimResponse,
        streams: &mut Vec<StreamAppend>,
    ) -> Result<Option<serde_json::Value>, AppError> {
        let Some(status) = ClaimStatus::from_code(i64::from(response.status)) else {
            return Err(invalid(index, "item[0].adjudication[0].category", "enum", "not an openIMIS claim status"));
        };
        // FHIR numbers the lines from 1, items first
        let mut lines = Vec::with_capacity(response.lines.len());
        for line in &response.lines {
            let Some((kind, line_index, _)) = data.lines().nth(line.sequence.saturating_sub(1)) else {
                return Err(invalid(index, "item", "exists", format!("the claim has no line {}", line.sequence)));
            };
            lines.push(LineOutcome {
                kind,
                index: line_index,
                status: line.status.and_then(LineStatus::from_code),
                rejection_reason: line.rejection_reason,
                qty_approved: line.qty_approved,
                price_adjusted: line.price_adjusted,
                price_approved: line.price_approved,
                price_valuated: line.price_valuated,
            });
        }
        let outcome = ClaimOutcome {
            claim_id: id,
            data: data.clone(),
            status,
            rejection_reason: response.rejection_reason,
            category: response.category.as_deref().and_then(ServiceCategory::from_name),
            claimed: data.claimed(),
            approved: response.approved,
            valuated: response.valuated,
            remunerated: response.remunerated,
            lines,
            at: Utc::now(),
        };
        let stream = claim_stream(id);
        let events = self.history(&stream).await?;
        if let Some(held) = newer_held(&events, peer, response.position) {
            return Ok(Some(older(held)));
        }
        let Loaded { state, version, .. } = fold::<Claim>(&events)?;
        let command = ReceiveOutcome { outcome, peer: peer.to_string() };
        let events = command.decide(&state, &Ctx { now: Utc::now(), seed: 0 }).map_err(|e| claim_refused(index, e))?;
        Ok(claim_append(streams, ctx, (stream, version), &events, response.position))
    }

    /// The master's register entry: appended as an upsert on its stream when it differs from
    /// what the stream last holds (`201` when new here, `200` when changed or the same). `Err`:
    /// the Bundle holds the entry's key twice.
    async fn register_entry(
        &self,
        ctx: &CommandCtx,
        sender: &str,
        incoming: &IncomingRegister,
        seen: &mut HashSet<String>,
        streams: &mut Vec<StreamAppend>,
    ) -> Result<Result<Value, String>, AppError> {
        let entry = &incoming.entry;
        let stream = entry.stream();
        if !seen.insert(stream.clone()) {
            return Ok(Err(format!("the Bundle holds the register entry of {stream} twice")));
        }
        let events = self.history(&stream).await?;
        let version = events.len() as i64;
        if version > 0 {
            // a version the master changed again since, arriving late (an older sync file, a
            // page asked again): the newer one held stays
            if let Some(held_at) = newer_held(&events, sender, incoming.position) {
                return Ok(Ok(json!({ "response": { "status": "200 OK", "outcome": older(held_at) } })));
            }
            let last = events.last();
            let held = last.and_then(|e| e.decode::<ClaimEvent>().ok()).and_then(|e| ReferenceEntry::of(&e));
            // the same entry: nothing to take, unless it is a newer version of it (the master
            // changed it and back), which is recorded so that the change between, arriving
            // late, is known to be older
            if held.as_ref() == Some(entry) && incoming.position.is_none() {
                return Ok(Ok(json!({ "response": { "status": "200 OK", "outcome": information("held already") } })));
            }
        }
        let events = versioned(ctx.events(&[entry.clone().event(Utc::now())]), incoming.position);
        streams.push(StreamAppend { stream, expected: ExpectedVersion::Exact(version), events });
        let status = if version == 0 { "201 Created" } else { "200 OK" };
        Ok(Ok(json!({ "response": { "status": status } })))
    }

    /// What the import looks up, read for the whole Bundle in two queries: the owners of every
    /// identifier of another server it names (its resources' and their references'), and which
    /// of the streams its ids would take exist. A lookup outside them asks the store.
    async fn lookups(&self, bundle: &IncomingBundle) -> Result<Lookups, AppError> {
        let (mut tokens, mut streams) = (HashSet::new(), HashSet::new());
        for incoming in &bundle.entries {
            let mut named: Vec<&Identifier> = incoming.identifiers().iter().collect();
            match incoming {
                Incoming::Patient(p) => named.extend(p.family_head.as_ref()),
                Incoming::Coverage(c) => named.push(&c.beneficiary),
                Incoming::ClaimResponse(r) => named.push(&r.request),
                Incoming::Claim(_) | Incoming::Reservation(_) | Incoming::Register(_) | Incoming::Deletion(..) => {}
            }
            for identifier in named {
                if identifier.system != self.own_system {
                    tokens.insert(identifier.token());
                }
                if (identifier.system == self.own_system || identifier.system == bundle.sender)
                    && let Ok(id) = Uuid::parse_str(&identifier.value)
                {
                    streams.extend(streams_of(incoming, id));
                }
            }
        }
        let owners = self.store.key_owners(IDENTIFIER_SCOPE, &tokens.iter().cloned().collect::<Vec<_>>()).await?;
        let existing = self.store.existing_streams(&streams.iter().cloned().collect::<Vec<_>>()).await?;
        Ok(Lookups { owners, tokens, existing, streams })
    }

    /// The resource an identifier names here, if any.
    async fn known(
        &self,
        lookups: &Lookups,
        identifier: &Identifier,
        resource_type: &str,
    ) -> Result<Option<Uuid>, AppError> {
        let local = if identifier.system == self.own_system {
            Some(identifier.value.clone())
        } else {
            let owner = self.owner(lookups, identifier).await?;
            owner.and_then(|owner| owner.strip_prefix(&format!("{resource_type}/")).map(str::to_string))
        };
        Ok(local.and_then(|id| Uuid::parse_str(&id).ok()))
    }

    /// Who holds an identifier of another server here (`<Type>/<id>`, or a deleted claim's
    /// tombstone): from the Bundle's lookups, else from the store.
    async fn owner(&self, lookups: &Lookups, identifier: &Identifier) -> Result<Option<String>, AppError> {
        let token = identifier.token();
        Ok(match lookups.tokens.contains(&token) {
            true => lookups.owners.get(&token).cloned(),
            false => self.store.key_owner(IDENTIFIER_SCOPE, &token).await?,
        })
    }

    /// Whether the sender deleted the claim of this identifier before it reached here.
    async fn deleted_by_sender(&self, lookups: &Lookups, identifier: &Identifier) -> Result<bool, AppError> {
        Ok(self.owner(lookups, identifier).await?.as_deref() == Some(DELETED_CLAIM))
    }

    /// Whether a resource of this type has this id here (enrolled here, or as reference data).
    async fn id_taken(&self, lookups: &Lookups, incoming: &Incoming, id: Uuid) -> Result<bool, AppError> {
        for stream in streams_of(incoming, id) {
            let exists = match lookups.streams.contains(&stream) {
                true => lookups.existing.contains(&stream),
                false => self.store.stream_version(&stream).await? > 0,
            };
            if exists {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The append that imports the Bundle, the answer to give, and the batches it assigns codes
    /// of.
    async fn decide(
        &self,
        ctx: &CommandCtx,
        bundle: &IncomingBundle,
    ) -> Result<(AppendRequest, Answer, Vec<String>), AppError> {
        let decision_ctx = Ctx { now: Utc::now(), seed: 0 };
        let lookups = self.lookups(bundle).await?;
        let from_master = self.master == Some(bundle.sender.as_str());
        // where every entry goes, and the local id each of their identifiers names
        let mut placed = Vec::with_capacity(bundle.entries.len());
        let mut named: HashMap<(String, &'static str), Uuid> = HashMap::new();
        let mut new_ids = std::collections::HashSet::new();
        for (index, incoming) in bundle.entries.iter().enumerate() {
            let kind = incoming.resource_type();
            if let Incoming::ClaimResponse(r) = incoming {
                // the response is of a claim: the Bundle's (placed before it) or one held here
                let claim = match named.get(&(r.request.token(), "Claim")) {
                    Some(id) => Some(*id),
                    None => self.known(&lookups, &r.request, "Claim").await?,
                };
                let fresh = claim.is_some_and(|id| new_ids.contains(&id));
                placed.push(match claim {
                    Some(id) if fresh => Placed::New(id),
                    Some(id) => Placed::Known(id),
                    None if from_master => Placed::Skipped(MASTERS_CLAIM),
                    None => {
                        return Err(invalid(
                            index,
                            "request.identifier",
                            "exists",
                            "the claim answered is neither earlier in the Bundle nor held here",
                        ));
                    }
                });
                continue;
            }
            if let Incoming::Register(_) = incoming {
                placed.push(if from_master { Placed::Register } else { Placed::Skipped(NOT_MASTERS_REGISTER) });
                continue;
            }
            if let Incoming::Deletion(identifier, _) = incoming {
                // a node deletes the claims it sent, named by its own id of them
                if identifier.system != bundle.sender {
                    return Err(invalid(
                        index,
                        "",
                        "rule",
                        "a deletion names the claim by the sender's own identifier (Bundle.identifier.system)",
                    ));
                }
                placed.push(match self.known(&lookups, identifier, "Claim").await? {
                    _ if from_master => Placed::Skipped(MASTERS_DELETION),
                    Some(id) => Placed::Deletion(id),
                    None => Placed::Tombstone,
                });
                continue;
            }
            let Some(theirs) = incoming.identifiers().iter().find(|i| i.system == bundle.sender) else {
                return Err(invalid(
                    index,
                    "identifier",
                    "required",
                    "the resource has no identifier of the Bundle's sender (Bundle.identifier.system)",
                ));
            };
            if matches!(incoming, Incoming::Claim(_)) && self.deleted_by_sender(&lookups, theirs).await? {
                placed.push(Placed::Skipped(DELETED_BY_SENDER));
                continue;
            }
            let mut found = None;
            for identifier in incoming.identifiers() {
                if let Some(id) = self.known(&lookups, identifier, kind).await? {
                    // one of ours that we no longer hold, or never did, is not a resource
                    if identifier.system == self.own_system && !self.id_taken(&lookups, incoming, id).await? {
                        return Err(invalid(
                            index,
                            "identifier",
                            "exists",
                            format!("{kind} {id} of this server's system is not held here"),
                        ));
                    }
                    found = Some(id);
                    break;
                }
            }
            let place = match found {
                Some(id) => Placed::Known(id),
                // the master's claims stay there: a node holds the claims it entered
                None if from_master && matches!(incoming, Incoming::Claim(_)) => {
                    placed.push(Placed::Skipped(MASTERS_CLAIM));
                    continue;
                }
                None => {
                    let wanted = Uuid::parse_str(&theirs.value).ok();
                    let id = match wanted {
                        Some(id) if !new_ids.contains(&id) && !self.id_taken(&lookups, incoming, id).await? => id,
                        _ => Uuid::now_v7(),
                    };
                    if !new_ids.insert(id) {
                        return Err(invalid(index, "identifier", "unique", "the Bundle holds this resource twice"));
                    }
                    Placed::New(id)
                }
            };
            for identifier in incoming.identifiers() {
                if named.insert((identifier.token(), kind), place.id()).is_some_and(|other| other != place.id()) {
                    return Err(invalid(
                        index,
                        "identifier",
                        "unique",
                        format!("identifier {} names two resources of the Bundle", identifier.token()),
                    ));
                }
            }
            placed.push(place);
        }

        // the new resources' events, decided on the states they start from
        let registers = Registers(self.store.db());
        let mut batches: BTreeMap<String, (i64, CodeBatch, Vec<CodeEvent>)> = BTreeMap::new();
        macro_rules! batch {
            ($stream:expr) => {{
                let stream: String = $stream;
                if !batches.contains_key(&stream) {
                    let loaded = load::<CodeBatch>(self.store, &stream).await?;
                    batches.insert(stream.clone(), (loaded.version, loaded.state, vec![]));
                }
                batches.get_mut(&stream).ok_or_else(|| AppError::Internal("batch not loaded".into()))?
            }};
        }
        let mut streams = Vec::new();
        let mut claims = Vec::new();
        let mut entries = Vec::new();
        // products are known here, or come with this Bundle (the master's register, before the
        // policies of its insurees)
        let mut product_known: HashMap<String, bool> = HashMap::new();
        for (incoming, place) in bundle.entries.iter().zip(&placed) {
            if let (Incoming::Register(r), Placed::Register) = (incoming, place)
                && let ReferenceEntry::Product(product) = &r.entry
            {
                product_known.insert(product.code.clone(), true);
            }
        }
        // the insurees this Bundle registers, as their family members see them
        let mut registered_here: HashMap<Uuid, Insuree> = HashMap::new();
        // the data of the Bundle's claims by their id here, and the claims whose cached state
        // this import changes
        let mut claim_data: HashMap<Uuid, &ClaimData> = HashMap::new();
        let mut touched: Vec<String> = Vec::new();
        let mut register_streams = HashSet::new();
        for (index, (incoming, place)) in bundle.entries.iter().zip(&placed).enumerate() {
            let kind = incoming.resource_type();
            let id = place.id();
            entries.push(match place {
                Placed::Skipped(why) => json!({ "response": { "status": "200 OK", "outcome": information(why) } }),
                Placed::Tombstone => {
                    let Incoming::Deletion(identifier, _) = incoming else { continue };
                    claims.push(KeyClaim {
                        scope: IDENTIFIER_SCOPE.into(),
                        keys: vec![identifier.token()],
                        owner: DELETED_CLAIM.into(),
                    });
                    entries
                        .push(json!({ "response": { "status": "200 OK", "outcome": information(NOTHING_TO_DELETE) } }));
                    continue;
                }
                Placed::Deletion(id) => {
                    let Incoming::Deletion(_, position) = incoming else { continue };
                    let note = self.claim_deleted(ctx, &bundle.sender, index, (*id, *position), &mut streams).await?;
                    let mut answer = json!({ "response": { "status": "200 OK", "location": format!("Claim/{id}") } });
                    if let Some(note) = note {
                        answer["response"]["outcome"] = note;
                    }
                    entries.push(answer);
                    touched.push(claim_stream(*id));
                    continue;
                }
                Placed::Register => {
                    let Incoming::Register(r) = incoming else { continue };
                    let answer =
                        self.register_entry(ctx, &bundle.sender, r, &mut register_streams, &mut streams).await?;
                    entries.push(answer.map_err(|message| invalid(index, "extension", "unique", message))?);
                    continue;
                }
                Placed::New(_) => {
                    json!({ "response": { "status": "201 Created", "location": format!("{kind}/{id}") } })
                }
                Placed::Known(_) => json!({ "response": { "status": "200 OK", "location": format!("{kind}/{id}") } }),
            });
            if let Incoming::Claim(c) = incoming {
                claim_data.insert(id, &c.data);
            }
            if let Placed::Known(id) = *place {
                let note = match incoming {
                    // a node's claim imported before: its change while it is entered here
                    Incoming::Claim(c) if !from_master => {
                        self.claim_changed(ctx, &bundle.sender, index, id, c, &mut streams, &mut claims).await?
                    }
                    // the master's decision of a claim this node entered
                    Incoming::ClaimResponse(r) if from_master => match claim_data.get(&id) {
                        Some(data) => {
                            self.outcome_received(ctx, &bundle.sender, index, id, data, r, &mut streams).await?
                        }
                        None => None,
                    },
                    _ => None,
                };
                if let (Some(note), Some(entry)) = (note, entries.last_mut()) {
                    entry["response"]["outcome"] = note;
                }
                if matches!(incoming, Incoming::Claim(_) | Incoming::ClaimResponse(_)) {
                    touched.push(claim_stream(id));
                }
                continue;
            }
            let Placed::New(id) = *place else { continue };
            if let Incoming::ClaimResponse(_) = incoming {
                // the claim's entry appended it; what the sender decided is looked at after
                continue;
            }
            // the foreign identifiers it keeps (its id on the sender and any other server's)
            let mut identifiers: Vec<Identifier> =
                incoming.identifiers().iter().filter(|i| i.system != self.own_system).cloned().collect();
            identifiers.sort();
            identifiers.dedup();
            if !identifiers.is_empty() {
                claims.push(KeyClaim {
                    scope: IDENTIFIER_SCOPE.into(),
                    keys: identifiers.iter().map(Identifier::token).collect(),
                    owner: format!("{kind}/{id}"),
                });
            }
            match incoming {
                Incoming::Patient(p) => {
                    let head = match &p.family_head {
                        None => None,
                        Some(identifier) => {
                            let id = match named.get(&(identifier.token(), "Patient")) {
                                Some(id) => Some(*id),
                                None => self.known(&lookups, identifier, "Patient").await?,
                            };
                            let Some(id) = id else { return Err(refused(index, InsureeError::UnknownFamilyHead)) };
                            let state = match registered_here.get(&id) {
                                Some(state) => state.clone(),
                                None => load::<Insuree>(self.store, &insuree_stream(id)).await?.state,
                            };
                            Some((id, state))
                        }
                    };
                    let command = RegisterInsuree {
                        insuree_id: id,
                        last_name: p.last_name.clone(),
                        other_names: p.other_names.clone(),
                        birth_date: p.birth_date,
                        gender: p.gender,
                        phone: p.phone.clone(),
                        family_head: head.as_ref().map(|(id, _)| *id),
                        location: p.location.clone(),
                        holder_type: HolderType::EnrolmentOfficer,
                        holder_code: String::new(),
                        identifiers,
                    };
                    let head_state = head.as_ref().map(|(_, h)| h);
                    let code = CodeQueries(self.store.db()).code(&p.chfid).await?;
                    let code = match code {
                        Some(code) => code,
                        None if from_master => {
                            // numbered by the master from its own pool: kept as its register
                            let registered = command
                                .decide_numbered_by_master(&Insuree::default(), head_state, &p.chfid, &decision_ctx)
                                .map_err(|e| refused(index, e))?;
                            registered_insuree(&mut registered_here, &mut claims, &mut streams, ctx, id, registered);
                            continue;
                        }
                        None => return Err(refused(index, InsureeError::UnknownCode { code: p.chfid.clone() })),
                    };
                    let batch_id = Uuid::parse_str(&code.batch_id).map_err(|e| AppError::Internal(e.to_string()))?;
                    let (_, batch, assigned) = batch!(batch_stream(batch_id));
                    let registration = command
                        .decide_code(&Insuree::default(), head_state, batch, &p.chfid, &decision_ctx)
                        .map_err(|e| refused(index, e))?;
                    *batch = std::mem::take(batch).evolve(&registration.code);
                    assigned.push(registration.code);
                    registered_insuree(&mut registered_here, &mut claims, &mut streams, ctx, id, registration.insuree);
                }
                Incoming::Claim(c) => {
                    let command = CreateClaim {
                        claim_id: id,
                        data: c.data.clone(),
                        facility: ctx.caller.health_facility.clone(),
                    };
                    let mut events =
                        command.decide(&Claim::default(), &decision_ctx).map_err(|e| claim_refused(index, e))?;
                    for event in &mut events {
                        if let ClaimEvent::ClaimCreated(record) = event {
                            record.identifiers = identifiers.clone();
                        }
                    }
                    claims.push(KeyClaim {
                        scope: CLAIM_CODE_SCOPE.into(),
                        keys: vec![self.claims.code_key(&c.data.health_facility, &c.data.code)],
                        owner: claim_stream(id),
                    });
                    streams.push(StreamAppend {
                        stream: claim_stream(id),
                        expected: ExpectedVersion::Exact(0),
                        events: versioned(ctx.events(&events), c.position),
                    });
                    touched.push(claim_stream(id));
                }
                Incoming::ClaimResponse(_) | Incoming::Register(_) | Incoming::Deletion(..) => {}
                Incoming::Reservation(r) => {
                    if r.for_server != self.own_system {
                        return Err(invalid(
                            index,
                            "extension",
                            "for-server",
                            format!("these codes were reserved for {}, not for this server", r.for_server),
                        ));
                    }
                    let stream = batch_stream(r.batch_id);
                    let (_, batch, received) = batch!(stream.clone());
                    let command = ReceiveReservation {
                        batch_id: r.batch_id,
                        reservation_id: r.reservation_id,
                        holder_type: r.holder_type,
                        holder_code: r.holder_code.clone(),
                        format: r.format.clone(),
                        codes: r.codes.clone(),
                    };
                    let events = command
                        .decide(batch, &decision_ctx)
                        .map_err(|e| invalid(index, "extension", "rule", e.to_string()))?;
                    if !events.is_empty() {
                        // this server's codes, as a batch generated here claims its own
                        claims.push(KeyClaim {
                            scope: CODE_SCOPE.into(),
                            keys: r.codes.clone(),
                            owner: stream.clone(),
                        });
                    }
                    for event in events {
                        *batch = std::mem::take(batch).evolve(&event);
                        received.push(event);
                    }
                }
                Incoming::Coverage(c) => {
                    let insuree = match named.get(&(c.beneficiary.token(), "Patient")) {
                        Some(id) => Some(*id),
                        None => self.known(&lookups, &c.beneficiary, "Patient").await?,
                    };
                    let insuree_known = match insuree {
                        Some(i) => new_ids.contains(&i) || registers.insuree_exists(&i.to_string()).await?,
                        None => false,
                    };
                    let product = match product_known.get(&c.product_code) {
                        Some(known) => *known,
                        None => {
                            let known = registers.product_exists(&c.product_code).await?;
                            product_known.insert(c.product_code.clone(), known);
                            known
                        }
                    };
                    let command = EnrolInPolicy {
                        policy_id: id,
                        insuree_id: insuree.unwrap_or_default(),
                        product_code: c.product_code.clone(),
                        enrol_date: c.enrol_date,
                        effective_date: c.effective_date,
                        expiry_date: c.expiry_date,
                        identifiers,
                    };
                    let events = command
                        .decide(&Policy::default(), insuree_known, product, &decision_ctx)
                        .map_err(|e| refused(index, e))?;
                    streams.push(StreamAppend {
                        stream: policy_stream(id),
                        expected: ExpectedVersion::Exact(0),
                        events: ctx.events(&events),
                    });
                    streams.push(StreamAppend {
                        stream: careledger_events::claims::policy_stream(id),
                        expected: ExpectedVersion::Exact(0),
                        events: vec![],
                    });
                }
            }
        }
        touched.extend(batches.keys().cloned());
        for (stream, (version, _, assigned)) in batches {
            streams.push(StreamAppend {
                stream,
                expected: ExpectedVersion::Exact(version),
                events: ctx.events(&assigned),
            });
        }
        let answer = Answer::ok(json!({ "resourceType": "Bundle", "type": "transaction-response", "entry": entries }));
        Ok((AppendRequest { streams, claims, idempotency: None }, answer, touched))
    }
}
