//! The pure domain of careledger: aggregates with `decide` and `evolve`.
//!
//! No async, no I/O, no clock: time, random seeds and reference data come in through the command
//! or [`Ctx`], so every rule can be tested without a database and replayed exactly.

pub mod claims;
pub mod codes;
pub mod insurees;
pub mod registry;
pub mod requisitions;

use chrono::{DateTime, Utc};

/// What a decision may know about the world besides the aggregate's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ctx {
    pub now: DateTime<Utc>,
    /// Seed for the decision's randomness (codes, salts). The gateway draws it from the OS.
    pub seed: u64,
}

/// An aggregate folds its events into state; `evolve` must accept every event its `decide` made.
pub trait Aggregate: Default {
    type Event;
    fn evolve(self, event: &Self::Event) -> Self;

    fn from_events<'a>(events: impl IntoIterator<Item = &'a Self::Event>) -> Self
    where
        Self::Event: 'a,
    {
        events.into_iter().fold(Self::default(), Self::evolve)
    }
}

/// How the outside should see a refused command: the gateway turns this into 404/409/422.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The input breaks a rule of its own; `entry` is the JSON path of the field at fault.
    Invalid { entry: &'static str },
    /// The thing the command is about does not exist.
    NotFound,
    /// The command does not fit the current state.
    Conflict,
    /// The caller may not act on this thing (it belongs to another legal entity).
    Forbidden,
}

/// Whether a text is 1 to `max` characters with nothing to trim at either end.
pub(crate) fn check_text(value: &str, max: usize) -> bool {
    let len = value.chars().count();
    len >= 1 && len <= max && value.trim() == value
}
