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

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use careledger_domain::codes::{CodeBatch, ReceiveReservation};
use careledger_domain::insurees::{EnrolInPolicy, Insuree, InsureeError, Policy, RegisterInsuree};
use careledger_domain::{Aggregate, Ctx};
use careledger_events::Identifier;
use careledger_events::claims::Gender;
use careledger_events::codes::{CodeEvent, CodeFormat, HolderType, batch_stream};
use careledger_events::insurees::{insuree_stream, policy_stream};
use careledger_projections::Projections;
use careledger_projections::claims::Registers;
use careledger_projections::codes::CodeQueries;
use careledger_store::{AppendRequest, EventStore, ExpectedVersion, KeyClaim, StoreError, StreamAppend};
use chrono::{NaiveDate, Utc};
use serde_json::json;
use uuid::Uuid;

use crate::codes::{CODE_SCOPE, INSUREE_SCOPE};
use crate::{AggregateCache, Answer, AppError, CommandCtx, CommitError, Invalid, MAX_ATTEMPTS, load};

/// The set invariant "an identifier of another server names one resource here": key
/// `system|value`, owner `<Type>/<local id>`.
pub const IDENTIFIER_SCOPE: &str = "fhir-identifier";

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
        }
    }

    fn resource_type(&self) -> &'static str {
        match self {
            Incoming::Patient(_) => "Patient",
            Incoming::Coverage(_) => "Coverage",
            Incoming::Reservation(_) => "Basic",
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
}

/// Where one entry went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placed {
    /// A resource this server holds already: nothing to append.
    Known(Uuid),
    /// New here, under this id.
    New(Uuid),
}

impl Placed {
    fn id(self) -> Uuid {
        match self {
            Placed::Known(id) | Placed::New(id) => id,
        }
    }
}

/// Entry `index`'s element `path` breaks `rule`.
fn invalid(index: usize, path: &str, rule: &'static str, message: impl Into<String>) -> AppError {
    AppError::Invalid(vec![Invalid::field(format!("Bundle.entry[{index}].resource.{path}"), rule, message)])
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
        if let Some(answer) = ctx.earlier_answer(self.store).await? {
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
                    self.forget(&touched).await?;
                    return Ok(answer);
                }
                Err(CommitError::Retry(StoreError::KeysTaken { scope, keys })) if scope == INSUREE_SCOPE => {
                    return Err(AppError::Conflict(format!(
                        "insuree {} already holds an insurance number",
                        keys.join(", ")
                    )));
                }
                Err(other) => {
                    self.forget(&touched).await?;
                    if let Some(answer) = other.settled() {
                        return answer;
                    }
                }
            }
        }
        Err(AppError::Conflict("the import kept conflicting with concurrent writers; retry".into()))
    }

    /// The batches' cached states are behind what the import appended (or tried to).
    async fn forget(&self, batches: &[String]) -> Result<(), AppError> {
        for batch in batches {
            self.batches.lock(self.store, batch).await?.reset();
        }
        Ok(())
    }

    /// The resource an identifier names here, if any.
    async fn known(&self, identifier: &Identifier, resource_type: &str) -> Result<Option<Uuid>, AppError> {
        let local = if identifier.system == self.own_system {
            Some(identifier.value.clone())
        } else {
            self.store
                .key_owner(IDENTIFIER_SCOPE, &identifier.token())
                .await?
                .and_then(|owner| owner.strip_prefix(&format!("{resource_type}/")).map(str::to_string))
        };
        Ok(local.and_then(|id| Uuid::parse_str(&id).ok()))
    }

    /// Whether a resource of this type has this id here (enrolled here, or as reference data).
    async fn id_taken(&self, incoming: &Incoming, id: Uuid) -> Result<bool, AppError> {
        let streams = match incoming {
            Incoming::Patient(_) => [insuree_stream(id), careledger_events::claims::insuree_stream(id)],
            Incoming::Coverage(_) => [policy_stream(id), careledger_events::claims::policy_stream(id)],
            // a reservation is no stream of its own: its id (the sender's event's) is never taken
            Incoming::Reservation(_) => return Ok(false),
        };
        for stream in streams {
            if self.store.stream_version(&stream).await? > 0 {
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
        // where every entry goes, and the local id each of their identifiers names
        let mut placed = Vec::with_capacity(bundle.entries.len());
        let mut named: HashMap<(String, &'static str), Uuid> = HashMap::new();
        let mut new_ids = std::collections::HashSet::new();
        for (index, incoming) in bundle.entries.iter().enumerate() {
            let kind = incoming.resource_type();
            let Some(theirs) = incoming.identifiers().iter().find(|i| i.system == bundle.sender) else {
                return Err(invalid(
                    index,
                    "identifier",
                    "required",
                    "the resource has no identifier of the Bundle's sender (Bundle.identifier.system)",
                ));
            };
            let mut found = None;
            for identifier in incoming.identifiers() {
                if let Some(id) = self.known(identifier, kind).await? {
                    // one of ours that we no longer hold, or never did, is not a resource
                    if identifier.system == self.own_system && !self.id_taken(incoming, id).await? {
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
                None => {
                    let wanted = Uuid::parse_str(&theirs.value).ok();
                    let id = match wanted {
                        Some(id) if !new_ids.contains(&id) && !self.id_taken(incoming, id).await? => id,
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
        let mut product_known: HashMap<String, bool> = HashMap::new();
        // the insurees this Bundle registers, as their family members see them
        let mut registered: HashMap<Uuid, Insuree> = HashMap::new();
        for (index, (incoming, place)) in bundle.entries.iter().zip(&placed).enumerate() {
            let kind = incoming.resource_type();
            let id = place.id();
            entries.push(json!({
                "response": {
                    "status": if matches!(place, Placed::New(_)) { "201 Created" } else { "200 OK" },
                    "location": format!("{kind}/{id}"),
                }
            }));
            let Placed::New(id) = *place else { continue };
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
                                None => self.known(identifier, "Patient").await?,
                            };
                            let Some(id) = id else { return Err(refused(index, InsureeError::UnknownFamilyHead)) };
                            let state = match registered.get(&id) {
                                Some(state) => state.clone(),
                                None => load::<Insuree>(self.store, &insuree_stream(id)).await?.state,
                            };
                            Some((id, state))
                        }
                    };
                    let Some(code) = CodeQueries(self.store.db()).code(&p.chfid).await? else {
                        return Err(refused(index, InsureeError::UnknownCode { code: p.chfid.clone() }));
                    };
                    let batch_id = Uuid::parse_str(&code.batch_id).map_err(|e| AppError::Internal(e.to_string()))?;
                    let (_, batch, assigned) = batch!(batch_stream(batch_id));
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
                    let registration = command
                        .decide_code(&Insuree::default(), head.as_ref().map(|(_, h)| h), batch, &p.chfid, &decision_ctx)
                        .map_err(|e| refused(index, e))?;
                    registered.insert(id, Insuree::default().evolve(&registration.insuree));
                    *batch = std::mem::take(batch).evolve(&registration.code);
                    claims.push(KeyClaim {
                        scope: INSUREE_SCOPE.into(),
                        keys: vec![id.to_string()],
                        owner: registration.chfid().to_string(),
                    });
                    assigned.push(registration.code);
                    streams.push(StreamAppend {
                        stream: insuree_stream(id),
                        expected: ExpectedVersion::Exact(0),
                        events: ctx.events(&[registration.insuree]),
                    });
                    streams.push(StreamAppend {
                        stream: careledger_events::claims::insuree_stream(id),
                        expected: ExpectedVersion::Exact(0),
                        events: vec![],
                    });
                }
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
                        None => self.known(&c.beneficiary, "Patient").await?,
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
        let touched: Vec<String> = batches.keys().cloned().collect();
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
