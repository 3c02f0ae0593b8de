//! The legal entities and divisions that equipment commands read, kept folded in memory.
//!
//! Registering equipment reads its legal entity and division; reading both streams from the log
//! cost two round trips before every append. They change rarely, so a decision's first try uses
//! the folded state this process last read, and is still never made on a stale fact unnoticed:
//! the append carries the versions it used as guards (see [`super::References`]), so a legal
//! entity or division that moved since, by any process, refuses the append and the command is
//! decided again on a fresh read. A refusal is not an append and has no guard: a decision that
//! refuses on remembered references is decided again on a fresh read before it is answered.

use std::collections::HashMap;
use std::sync::Mutex;

use careledger_domain::Aggregate;
use careledger_domain::registry::{Division, LegalEntity};
use careledger_events::registry::RegistryEvent;

use careledger_store::EventStore;

use super::{Folded, load};
use crate::AppError;

/// Streams remembered per kind at most; past it the memory starts afresh (a read refills it).
const CAPACITY: usize = 100_000;

/// Where a decision's references come from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Read {
    /// This process's memory when it has the stream, else the log.
    Remembered,
    /// The log.
    Fresh,
}

/// Folded streams of one aggregate kind, by stream.
pub struct Known<A> {
    entries: Mutex<HashMap<String, Folded<A>>>,
}

impl<A: Clone> Known<A> {
    fn get(&self, stream: &str) -> Option<Folded<A>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).get(stream).cloned()
    }

    /// Keeps `folded` unless a newer version of the stream is kept already.
    fn put(&self, stream: &str, folded: &Folded<A>) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.get(stream).is_some_and(|kept| kept.version >= folded.version) {
            return;
        }
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        entries.insert(stream.to_string(), folded.clone());
    }
}

impl<A> Default for Known<A> {
    fn default() -> Self {
        Known { entries: Mutex::new(HashMap::new()) }
    }
}

/// The references of this process.
#[derive(Default)]
pub struct RegistryReferences {
    legal_entities: Known<LegalEntity>,
    divisions: Known<Division>,
}

/// An aggregate kept in [`RegistryReferences`].
pub(crate) trait Reference: Aggregate<Event = RegistryEvent> + Clone {
    fn known(references: &RegistryReferences) -> &Known<Self>;
}

impl Reference for LegalEntity {
    fn known(references: &RegistryReferences) -> &Known<Self> {
        &references.legal_entities
    }
}

impl Reference for Division {
    fn known(references: &RegistryReferences) -> &Known<Self> {
        &references.divisions
    }
}

/// The stream folded, from memory when `read` allows it and it is there, else from the log
/// (and then remembered).
pub(crate) async fn reference<A: Reference>(
    store: &EventStore,
    references: &RegistryReferences,
    stream: &str,
    read: Read,
) -> Result<Folded<A>, AppError> {
    let known = A::known(references);
    if read == Read::Remembered
        && let Some(folded) = known.get(stream)
    {
        return Ok(folded);
    }
    let folded = load::<A>(store, stream).await?;
    if folded.version > 0 {
        known.put(stream, &folded);
    }
    Ok(folded)
}
