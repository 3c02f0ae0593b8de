//! Events of the openIMIS claim context: the reference data the claim rules read (health
//! facilities, medical items and services, price lists, insurees, products, policies) and the
//! life of a claim from entry to valuation.
//!
//! Streams: reference data is one stream per entry (`claims-facility-<code>`,
//! `claims-item-<code>`, `claims-service-<code>`, `claims-pricelist-<facility code>`,
//! `claims-insuree-<uuid>`, `claims-product-<code>`, `claims-policy-<uuid>`); every upsert is an
//! event (audited), the newest one is what holds. A claim's whole life is on
//! `claims-claim-<uuid>`; a valuation batch run is recorded on `claims-batchrun-<uuid>`.
//!
//! Amounts and quantities are [`Amount`]s: hundredths held as integers (money adds up exactly),
//! written in JSON as plain numbers (`12.5`). Status codes are openIMIS' numbers.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::DomainEvent;

/// A decimal with two places, held as hundredths: money and quantities.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Amount(pub i64);

impl Amount {
    pub const ZERO: Amount = Amount(0);

    /// The largest quantity a request may give (a line's `qty_provided`, `qty_approved`).
    pub const MAX_QUANTITY: Amount = Amount::units(100_000);
    /// The largest price or sum a request may give for one entry (prices asked, adjusted and
    /// approved, price lists, an item's maximum amount, a product's limits).
    pub const MAX_PRICE: Amount = Amount::units(1_000_000_000);
    /// The largest value of one claim line (quantity × price), at every stage.
    pub const MAX_LINE_VALUE: Amount = Amount::units(10_000_000_000);
    /// The largest amount one valuation run distributes.
    pub const MAX_ALLOCATION: Amount = Amount::units(1_000_000_000_000);

    // Why these bounds (README "Bounds"): a line's SQL product `qty × price` in hundredths is at
    // most 10^7 × 10^11 = 10^18 < 2^63; a claim of 200 lines at MAX_LINE_VALUE is 2 × 10^14
    // hundredths, and a valuation run's lines add up to at most MAX_ALLOCATION (10^14
    // hundredths): both below 2^50, under which an amount is exact as a JSON number. The codec
    // below decodes whatever it encodes anyway (the property test in events/tests/amounts.rs).

    /// `units` whole units (`Amount::units(3)` is 3.00).
    pub const fn units(units: i64) -> Amount {
        Amount(units * 100)
    }

    /// The amount nearest to a JSON number (half away from zero), if it fits.
    pub fn from_f64(value: f64) -> Option<Amount> {
        let hundredths = (value * 100.0).round();
        (value.is_finite() && hundredths.abs() < 9.0e15).then_some(Amount(hundredths as i64))
    }

    pub fn to_f64(self) -> f64 {
        self.0 as f64 / 100.0
    }

    /// `self × other`, rounded half away from zero to hundredths (quantity × price).
    pub fn times(self, other: Amount) -> Amount {
        Amount(round_div(i128::from(self.0) * i128::from(other.0), 100))
    }

    /// `self × numerator / denominator`, rounded to hundredths (0 when the denominator is 0).
    pub fn scaled(self, numerator: Amount, denominator: Amount) -> Amount {
        if denominator.0 == 0 {
            return Amount::ZERO;
        }
        Amount(round_div(i128::from(self.0) * i128::from(numerator.0), i128::from(denominator.0)))
    }

    pub fn is_positive(self) -> bool {
        self.0 > 0
    }
}

fn round_div(n: i128, d: i128) -> i64 {
    let (n, d) = if d < 0 { (-n, -d) } else { (n, d) };
    let q = if n >= 0 { (n + d / 2) / d } else { (n - d / 2) / d };
    q.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

impl std::ops::Add for Amount {
    type Output = Amount;
    fn add(self, other: Amount) -> Amount {
        Amount(self.0.saturating_add(other.0))
    }
}

impl std::ops::Sub for Amount {
    type Output = Amount;
    fn sub(self, other: Amount) -> Amount {
        Amount(self.0.saturating_sub(other.0))
    }
}

impl std::iter::Sum for Amount {
    fn sum<I: Iterator<Item = Amount>>(iter: I) -> Amount {
        iter.fold(Amount::ZERO, |a, b| a + b)
    }
}

impl std::fmt::Display for Amount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        write!(f, "{sign}{}.{:02}", self.0.unsigned_abs() / 100, self.0.unsigned_abs() % 100)
    }
}

impl Serialize for Amount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 % 100 == 0 { s.serialize_i64(self.0 / 100) } else { s.serialize_f64(self.to_f64()) }
    }
}

impl schemars::JsonSchema for Amount {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Amount".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "description": "a decimal with at most two places", "type": "number" })
    }
}

/// Decodes every amount [`Serialize`] writes: whole amounts exactly as integers (any `i64` of
/// hundredths), others from the nearest `f64` (exact below 2^50 hundredths, the nearest
/// representable value above, saturating at the `i64` range). Only what is no number is
/// refused: an event that was
/// written must always be read back, or every projector would stop at it.
impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Amount;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number with at most two decimals")
            }

            fn visit_i64<E: serde::de::Error>(self, units: i64) -> Result<Amount, E> {
                units.checked_mul(100).map(Amount).ok_or_else(|| E::custom("amount out of range"))
            }

            fn visit_u64<E: serde::de::Error>(self, units: u64) -> Result<Amount, E> {
                i64::try_from(units).map_err(|_| E::custom("amount out of range")).and_then(|u| self.visit_i64(u))
            }

            fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<Amount, E> {
                if !value.is_finite() {
                    return Err(E::custom("amount out of range"));
                }
                // `as` saturates at the i64 range
                Ok(Amount((value * 100.0).round() as i64))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// An enumeration written as openIMIS' number (`2` for ENTERED) in JSON and in the read models,
/// with its name for messages.
macro_rules! code_list {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $code:literal $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn code(self) -> i32 {
                match self {
                    $($name::$variant => $code),+
                }
            }

            pub fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            pub fn from_code(code: i64) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| i64::from(v.code()) == code)
            }

            /// Every code with its name, for messages: `"1 (REJECTED), 2 (ENTERED)"`.
            pub fn codes() -> String {
                Self::ALL.iter().map(|v| format!("{} ({})", v.code(), v.name())).collect::<Vec<_>>().join(", ")
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_i32(self.code())
            }
        }

        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                let codes: Vec<i32> = $name::ALL.iter().map(|v| v.code()).collect();
                schemars::json_schema!({ "description": $name::codes(), "type": "integer", "enum": codes })
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let code = i64::deserialize(d)?;
                $name::from_code(code).ok_or_else(|| serde::de::Error::custom(format!("no {} {code}", stringify!($name))))
            }
        }
    };
}

code_list!(
    /// A claim's status (openIMIS' codes).
    ClaimStatus {
        Rejected => 1 "REJECTED",
        Entered => 2 "ENTERED",
        Checked => 4 "CHECKED",
        Processed => 8 "PROCESSED",
        Valuated => 16 "VALUATED",
    }
);

code_list!(
    /// Where a claim is in its feedback or its review (openIMIS' codes, the same for both).
    StepStatus {
        Idle => 1 "IDLE",
        NotSelected => 2 "NOT_SELECTED",
        Selected => 4 "SELECTED",
        Delivered => 8 "DELIVERED",
        Bypassed => 16 "BYPASSED",
    }
);

code_list!(
    /// A claim line's status after submission.
    LineStatus {
        Passed => 1 "PASSED",
        Rejected => 2 "REJECTED",
    }
);

value_list!(
    /// Which care an item, a service, a facility or a claim is for: in-patient, out-patient, both.
    CareType {
        InPatient => "I",
        OutPatient => "O",
        Both => "B",
    }
);

value_list!(
    /// A claim line's kind.
    LineKind {
        Item => "item",
        Service => "service",
    }
);

value_list!(
    /// How a product pays a covered item or service: the price list's price (P), the price the
    /// facility asked (O), both fixed; or relative (R), valued by a batch run from an allocated amount.
    PriceOrigin {
        PriceList => "P",
        Own => "O",
        Relative => "R",
    }
);

value_list!(
    /// The visit type of a claim (openIMIS): emergency, referral, other.
    VisitType {
        Emergency => "E",
        Referral => "R",
        Other => "O",
    }
);

value_list!(
    /// A service's category, from which a checked claim's category follows: surgery, delivery,
    /// antenatal, hospitalization, consultation, other; V (visit) when no service says more.
    ServiceCategory {
        Surgery => "S",
        Delivery => "D",
        Antenatal => "A",
        Hospitalization => "H",
        Consultation => "C",
        Other => "O",
        Visit => "V",
    }
);

value_list!(
    Gender {
        Male => "M",
        Female => "F",
        Other => "O",
    }
);

/// A health facility of the register.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HealthFacility {
    pub code: String,
    pub name: String,
    pub care_type: CareType,
}

/// A medical item or service of the register.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MedicalEntry {
    pub kind: LineKind,
    pub code: String,
    pub name: String,
    pub price: Amount,
    pub care_type: CareType,
    /// Days that must pass before the same insuree may receive it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_days: Option<u32>,
    /// The largest quantity one claim line may be paid for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum_amount: Option<Amount>,
    /// Services only: the category a claim takes from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<ServiceCategory>,
}

/// One item or service of a facility's price list, valid from a date (to a date).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PriceListEntry {
    pub kind: LineKind,
    pub code: String,
    /// The facility's price; the register's price when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<Amount>,
    pub valid_from: NaiveDate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_to: Option<NaiveDate>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Insuree {
    pub insuree_id: Uuid,
    pub chfid: String,
    pub birth_date: NaiveDate,
    pub gender: Gender,
}

/// An item or service a product covers, with its limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Coverage {
    pub kind: LineKind,
    pub code: String,
    /// Most quantity an adult (a child) may receive under one policy; no limit when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_adult: Option<Amount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_child: Option<Amount>,
    /// Months after the policy's start before it is covered, for adults and for children.
    #[serde(default)]
    pub waiting_period_adult: u32,
    #[serde(default)]
    pub waiting_period_child: u32,
    pub price_origin: PriceOrigin,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Product {
    pub code: String,
    pub name: String,
    pub coverage: Vec<Coverage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Policy {
    pub policy_id: Uuid,
    pub insuree_id: Uuid,
    pub product_code: String,
    pub effective_date: NaiveDate,
    pub expiry_date: NaiveDate,
}

/// One item or service line of a claim as entered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LineInput {
    pub code: String,
    pub qty_provided: Amount,
    pub price_asked: Amount,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explanation: Option<String>,
}

/// Everything a claim is created or updated with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ClaimData {
    pub code: String,
    pub health_facility: String,
    /// The insuree's CHFID.
    pub insuree: String,
    pub date_from: NaiveDate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_to: Option<NaiveDate>,
    pub date_claimed: NaiveDate,
    /// The main diagnosis (ICD code) and up to four more.
    pub icd: String,
    #[serde(default)]
    pub icd_secondary: Vec<String>,
    pub visit_type: VisitType,
    /// In-patient or out-patient care; out-patient when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub care_type: Option<CareType>,
    /// The claim administrator's code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explanation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guarantee_id: Option<String>,
    #[serde(default)]
    pub items: Vec<LineInput>,
    #[serde(default)]
    pub services: Vec<LineInput>,
}

impl ClaimData {
    /// The date the rules are checked at: `date_to`, else `date_from`.
    pub fn target_date(&self) -> NaiveDate {
        self.date_to.unwrap_or(self.date_from)
    }

    /// Every line with its kind and its index within its kind.
    pub fn lines(&self) -> impl Iterator<Item = (LineKind, usize, &LineInput)> {
        let items = self.items.iter().enumerate().map(|(i, l)| (LineKind::Item, i, l));
        items.chain(self.services.iter().enumerate().map(|(i, l)| (LineKind::Service, i, l)))
    }

    /// Σ qty_provided × price_asked.
    pub fn claimed(&self) -> Amount {
        self.lines().map(|(_, _, l)| l.qty_provided.times(l.price_asked)).sum()
    }
}

/// A claim as created or updated: its data and what follows from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ClaimRecord {
    pub claim_id: Uuid,
    #[serde(flatten)]
    pub data: ClaimData,
    pub claimed: Amount,
    /// The REJECTED claim this one restores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_from: Option<Uuid>,
    /// The ids other servers gave the claim (a claim entered offline and imported keeps the
    /// node's id under the node's system); set when created only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifiers: Vec<crate::Identifier>,
    pub at: DateTime<Utc>,
}

/// What submission decided of one line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LineAssessment {
    pub kind: LineKind,
    pub index: usize,
    pub status: LineStatus,
    /// openIMIS' rejection reason (0 when passed).
    pub rejection_reason: i32,
    /// The quantity paid when the product's limit trimmed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qty_approved: Option<Amount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_adjusted: Option<Amount>,
    /// The product that covers it and how it pays it (passed lines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_origin: Option<PriceOrigin>,
}

/// A line as the master server holds it (offline sync: the outcome of a claim a node entered).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LineOutcome {
    pub kind: LineKind,
    pub index: usize,
    /// None while the claim is not submitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<LineStatus>,
    #[serde(default)]
    pub rejection_reason: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qty_approved: Option<Amount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_adjusted: Option<Amount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_approved: Option<Amount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_valuated: Option<Amount>,
}

/// A claim as its master server decided it: an offline node mirrors the master's review,
/// processing and valuation of the claims it entered (the master decides them; the node shows
/// what was decided).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ClaimOutcome {
    pub claim_id: Uuid,
    /// The claim's data on the master (the node's, as imported there).
    #[serde(flatten)]
    pub data: ClaimData,
    pub status: ClaimStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejection_reason: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<ServiceCategory>,
    pub claimed: Amount,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved: Option<Amount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valuated: Option<Amount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remunerated: Option<Amount>,
    pub lines: Vec<LineOutcome>,
    pub at: DateTime<Utc>,
}

value_list!(
    /// Why a sync did not take a change of a claim as sent (issue #21, "never lose a change
    /// silently"): this server had submitted the claim (it decides a claim from then on), the
    /// master's decision replaced a node's change, or the claim was deleted here.
    ConflictRule {
        DecidedHere => "DECIDED_HERE",
        ReplacedByMaster => "REPLACED_BY_MASTER",
        DeletedHere => "DELETED_HERE",
        DeletedThere => "DELETED_THERE",
    }
);

/// A change of a claim a sync did not take as sent, kept whole: the claim's data as the change
/// had it (on the central server: the node's change not taken; on a node: its own change the
/// master's claim replaced).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SyncConflict {
    pub claim_id: Uuid,
    /// The other server (the sender of the change, or the master that decided over it).
    pub peer: String,
    pub rule: ConflictRule,
    /// The claim's status here when the change arrived.
    pub status: ClaimStatus,
    pub data: ClaimData,
    pub at: DateTime<Utc>,
}

/// What a reviewer decided of one line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LineReview {
    pub kind: LineKind,
    pub index: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qty_approved: Option<Amount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_approved: Option<Amount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
    /// The reviewer rejects the line.
    #[serde(default)]
    pub rejected: bool,
}

/// The price a line is valued at when processed or in a batch run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LineValuation {
    pub kind: LineKind,
    pub index: usize,
    pub price_valuated: Amount,
}

/// The answers of an insuree's feedback on a claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Feedback {
    pub care_rendered: bool,
    pub payment_asked: bool,
    pub drug_prescribed: bool,
    pub drug_received: bool,
    /// 0 to 5.
    pub assessment: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub officer: Option<String>,
    pub feedback_date: NaiveDate,
}

/// A document attached to a claim: a URL, or a file whose bytes are kept outside the log under
/// their BLAKE2b hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Attachment {
    pub attachment_id: Uuid,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type")]
pub enum ClaimEvent {
    HealthFacilityUpserted {
        #[serde(flatten)]
        facility: HealthFacility,
        at: DateTime<Utc>,
    },
    MedicalEntryUpserted {
        #[serde(flatten)]
        entry: MedicalEntry,
        at: DateTime<Utc>,
    },
    /// The facility's whole price list, replacing the one before.
    PriceListUpserted {
        health_facility: String,
        entries: Vec<PriceListEntry>,
        at: DateTime<Utc>,
    },
    InsureeUpserted {
        #[serde(flatten)]
        insuree: Insuree,
        at: DateTime<Utc>,
    },
    ProductUpserted {
        #[serde(flatten)]
        product: Product,
        at: DateTime<Utc>,
    },
    PolicyUpserted {
        #[serde(flatten)]
        policy: Policy,
        at: DateTime<Utc>,
    },
    /// A claim was entered (ENTERED); `claimed` is Σ qty_provided × price_asked.
    ClaimCreated(Box<ClaimRecord>),
    /// The ENTERED claim's data was replaced.
    ClaimUpdated(Box<ClaimRecord>),
    /// The ENTERED claim was deleted: it no longer exists and its code is free again.
    ClaimDeleted {
        claim_id: Uuid,
        at: DateTime<Utc>,
    },
    /// Submitted and checked: CHECKED with its passed and rejected lines, `approved` and the
    /// category; or REJECTED (every line rejected) with the claim's rejection reason.
    ClaimSubmitted {
        claim_id: Uuid,
        status: ClaimStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rejection_reason: Option<i32>,
        lines: Vec<LineAssessment>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        approved: Option<Amount>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        category: Option<ServiceCategory>,
        at: DateTime<Utc>,
    },
    FeedbackStatusChanged {
        claim_id: Uuid,
        feedback_status: StepStatus,
        at: DateTime<Utc>,
    },
    FeedbackDelivered {
        claim_id: Uuid,
        feedback: Feedback,
        at: DateTime<Utc>,
    },
    ReviewStatusChanged {
        claim_id: Uuid,
        review_status: StepStatus,
        at: DateTime<Utc>,
    },
    /// A review saved (`delivered`: and delivered); the claim is REJECTED when no line passes.
    ReviewSaved {
        claim_id: Uuid,
        lines: Vec<LineReview>,
        approved: Amount,
        status: ClaimStatus,
        delivered: bool,
        at: DateTime<Utc>,
    },
    /// Processed: PROCESSED when a line waits for a batch run (relative price), else VALUATED
    /// with `remunerated`. Selected but undelivered feedback and review became BYPASSED.
    ClaimProcessed {
        claim_id: Uuid,
        status: ClaimStatus,
        lines: Vec<LineValuation>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        valuated: Option<Amount>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        remunerated: Option<Amount>,
        feedback_status: StepStatus,
        review_status: StepStatus,
        at: DateTime<Utc>,
    },
    /// A batch run valued the claim's relative lines of its product: VALUATED once no relative
    /// line waits any more (`status`), else still PROCESSED.
    ClaimValuated {
        claim_id: Uuid,
        batch_run_id: Uuid,
        status: ClaimStatus,
        lines: Vec<LineValuation>,
        valuated: Amount,
        remunerated: Amount,
        at: DateTime<Utc>,
    },
    /// A valuation batch run of a product and period (on `claims-batchrun-<uuid>`).
    ValuationRun {
        batch_run_id: Uuid,
        product: String,
        from: NaiveDate,
        to: NaiveDate,
        amount: Amount,
        /// Σ of the valued lines' approved value.
        relative_total: Amount,
        claims: Vec<Uuid>,
        at: DateTime<Utc>,
    },
    /// The REJECTED claim was restored as a new ENTERED claim.
    ClaimRestored {
        claim_id: Uuid,
        restored_as: Uuid,
        at: DateTime<Utc>,
    },
    AttachmentAdded {
        claim_id: Uuid,
        attachment: Attachment,
        at: DateTime<Utc>,
    },
    AttachmentUpdated {
        claim_id: Uuid,
        attachment: Attachment,
        at: DateTime<Utc>,
    },
    AttachmentDeleted {
        claim_id: Uuid,
        attachment_id: Uuid,
        at: DateTime<Utc>,
    },
    /// On an offline node: the claim as its master server decided it (status, lines, amounts).
    OutcomeReceived(Box<ClaimOutcome>),
    /// A sync did not take a change of the claim as sent; the change is kept here.
    ConflictRecorded(Box<SyncConflict>),
}

pub fn facility_stream(code: &str) -> String {
    format!("claims-facility-{code}")
}

pub fn medical_stream(kind: LineKind, code: &str) -> String {
    format!("claims-{}-{code}", kind.name())
}

pub fn price_list_stream(facility: &str) -> String {
    format!("claims-pricelist-{facility}")
}

pub fn insuree_stream(insuree_id: Uuid) -> String {
    format!("claims-insuree-{insuree_id}")
}

pub fn product_stream(code: &str) -> String {
    format!("claims-product-{code}")
}

pub fn policy_stream(policy_id: Uuid) -> String {
    format!("claims-policy-{policy_id}")
}

pub fn claim_stream(claim_id: Uuid) -> String {
    format!("claims-claim-{claim_id}")
}

pub fn batch_run_stream(batch_run_id: Uuid) -> String {
    format!("claims-batchrun-{batch_run_id}")
}

impl DomainEvent for ClaimEvent {
    const CONTEXT: &'static str = "claims";

    fn event_type(&self) -> &'static str {
        match self {
            ClaimEvent::HealthFacilityUpserted { .. } => "HealthFacilityUpserted",
            ClaimEvent::MedicalEntryUpserted { .. } => "MedicalEntryUpserted",
            ClaimEvent::PriceListUpserted { .. } => "PriceListUpserted",
            ClaimEvent::InsureeUpserted { .. } => "InsureeUpserted",
            ClaimEvent::ProductUpserted { .. } => "ProductUpserted",
            ClaimEvent::PolicyUpserted { .. } => "PolicyUpserted",
            ClaimEvent::ClaimCreated(_) => "ClaimCreated",
            ClaimEvent::ClaimUpdated(_) => "ClaimUpdated",
            ClaimEvent::ClaimDeleted { .. } => "ClaimDeleted",
            ClaimEvent::ClaimSubmitted { .. } => "ClaimSubmitted",
            ClaimEvent::FeedbackStatusChanged { .. } => "FeedbackStatusChanged",
            ClaimEvent::FeedbackDelivered { .. } => "FeedbackDelivered",
            ClaimEvent::ReviewStatusChanged { .. } => "ReviewStatusChanged",
            ClaimEvent::ReviewSaved { .. } => "ReviewSaved",
            ClaimEvent::ClaimProcessed { .. } => "ClaimProcessed",
            ClaimEvent::ClaimValuated { .. } => "ClaimValuated",
            ClaimEvent::ValuationRun { .. } => "ValuationRun",
            ClaimEvent::ClaimRestored { .. } => "ClaimRestored",
            ClaimEvent::AttachmentAdded { .. } => "AttachmentAdded",
            ClaimEvent::AttachmentUpdated { .. } => "AttachmentUpdated",
            ClaimEvent::AttachmentDeleted { .. } => "AttachmentDeleted",
            ClaimEvent::OutcomeReceived(_) => "OutcomeReceived",
            ClaimEvent::ConflictRecorded(_) => "ConflictRecorded",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_exact_hundredths_written_as_numbers() {
        let price: Amount = serde_json::from_str("0.29").unwrap();
        assert_eq!(price, Amount(29));
        assert_eq!(serde_json::to_string(&Amount(1250)).unwrap(), "12.5");
        assert_eq!(serde_json::to_string(&Amount::units(3)).unwrap(), "3");
        assert_eq!(Amount(150).times(Amount(333)), Amount(500)); // 1.5 × 3.33 = 4.995 -> 5.00
        assert_eq!(Amount(1000).scaled(Amount(1), Amount(3)), Amount(333));
        assert_eq!(Amount(-5).to_string(), "-0.05");
        assert!(serde_json::from_str::<Amount>("\"1\"").is_err());
    }

    #[test]
    fn statuses_are_openimis_numbers() {
        assert_eq!(serde_json::to_string(&ClaimStatus::Checked).unwrap(), "4");
        assert_eq!(serde_json::from_str::<StepStatus>("16").unwrap(), StepStatus::Bypassed);
        assert!(serde_json::from_str::<ClaimStatus>("3").is_err());
        assert_eq!(LineStatus::codes(), "1 (PASSED), 2 (REJECTED)");
    }

    #[test]
    fn events_round_trip_through_type_and_data() {
        let data = ClaimData {
            code: "C-1".into(),
            health_facility: "HF-1".into(),
            insuree: "123456782".into(),
            date_from: NaiveDate::from_ymd_opt(2026, 1, 5).unwrap(),
            date_to: None,
            date_claimed: NaiveDate::from_ymd_opt(2026, 1, 6).unwrap(),
            icd: "A00".into(),
            icd_secondary: vec![],
            visit_type: VisitType::Other,
            care_type: None,
            admin: None,
            explanation: None,
            guarantee_id: None,
            items: vec![LineInput {
                code: "I1".into(),
                qty_provided: Amount::units(2),
                price_asked: Amount(1050),
                explanation: None,
            }],
            services: vec![],
        };
        let e = ClaimEvent::ClaimCreated(Box::new(ClaimRecord {
            claim_id: Uuid::nil(),
            claimed: data.claimed(),
            data,
            restored_from: None,
            identifiers: vec![],
            at: DateTime::<Utc>::UNIX_EPOCH,
        }));
        let json = e.to_data();
        assert_eq!(json["type"], "ClaimCreated");
        assert_eq!(json["claimed"], 21);
        assert_eq!(json["items"][0]["price_asked"], 10.5);
        assert_eq!(ClaimEvent::decode("ClaimCreated", &json).unwrap(), e);
        assert_eq!(crate::stream_context(&claim_stream(Uuid::nil())), "claims");
    }
}
