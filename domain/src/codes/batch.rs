//! The state of one batch of codes, folded from its events.
//!
//! Kept compact (a code is its number, a status byte, and an entry in an index) because a batch may
//! hold a million codes and the command handler keeps recently used batches in memory.

use std::collections::{BTreeSet, HashMap};

use careledger_events::codes::{CodeEvent, CodeFormat, HolderType};
use serde::Serialize;
use uuid::Uuid;

use super::format::CodeFormatExt;
use crate::Aggregate;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeStatus {
    Available,
    Reserved,
    Assigned,
}

impl CodeStatus {
    pub fn name(self) -> &'static str {
        match self {
            CodeStatus::Available => "available",
            CodeStatus::Reserved => "reserved",
            CodeStatus::Assigned => "assigned",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "available" => Some(CodeStatus::Available),
            "reserved" => Some(CodeStatus::Reserved),
            "assigned" => Some(CodeStatus::Assigned),
            _ => None,
        }
    }
}

/// One code of the batch and what has happened to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeSlot {
    pub number: u64,
    pub status: CodeStatus,
    pub insuree_id: Option<String>,
    pub control_number: Option<String>,
    pub json_ext: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default)]
pub struct CodeBatch {
    pub batch_id: Option<Uuid>,
    pub holder_type: Option<HolderType>,
    pub holder_code: String,
    pub format: CodeFormat,
    /// The number of codes ordered.
    pub number: u32,
    pub chunks: u32,
    slots: Vec<CodeSlot>,
    index: HashMap<u64, u32>,
    /// Slot indexes of available codes: reservations take the oldest first.
    available: BTreeSet<u32>,
    /// Slot indexes of reserved codes to hand out on this server (not those reserved for an
    /// offline node): a registration takes the oldest first.
    reserved: BTreeSet<u32>,
}

impl CodeBatch {
    pub fn exists(&self) -> bool {
        self.batch_id.is_some()
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn available_count(&self) -> usize {
        self.available.len()
    }

    /// How many codes are reserved and not yet assigned.
    pub fn reserved_count(&self) -> usize {
        self.reserved.len()
    }

    /// The oldest reserved code not yet assigned: the number an insuree registered by the
    /// batch's holder gets next.
    pub fn oldest_reserved(&self) -> Option<String> {
        self.reserved.iter().next().map(|&i| self.format.render(self.slots[i as usize].number))
    }

    pub fn slot(&self, code: &str) -> Option<&CodeSlot> {
        let number = self.format.parse(code)?;
        self.index.get(&number).map(|&i| &self.slots[i as usize])
    }

    /// The texts of the `n` oldest available codes.
    pub fn oldest_available(&self, n: usize) -> Vec<String> {
        self.available.iter().take(n).map(|&i| self.format.render(self.slots[i as usize].number)).collect()
    }

    fn slot_mut(&mut self, code: &str) -> Option<(u32, &mut CodeSlot)> {
        let number = self.format.parse(code)?;
        let i = *self.index.get(&number)?;
        Some((i, &mut self.slots[i as usize]))
    }
}

impl Aggregate for CodeBatch {
    type Event = CodeEvent;

    fn evolve(mut self, event: &CodeEvent) -> Self {
        match event {
            CodeEvent::CodeBatchGenerated { batch_id, holder_type, holder_code, number, format, .. } => {
                self.batch_id = Some(*batch_id);
                self.holder_type = Some(*holder_type);
                self.holder_code = holder_code.clone();
                self.number = *number;
                self.format = format.clone();
                self.slots.reserve(*number as usize);
                self.index.reserve(*number as usize);
            }
            CodeEvent::CodesGenerated { codes, .. } => {
                self.chunks += 1;
                for code in codes {
                    if let Some(number) = self.format.parse(code) {
                        let i = self.slots.len() as u32;
                        self.slots.push(CodeSlot {
                            number,
                            status: CodeStatus::Available,
                            insuree_id: None,
                            control_number: None,
                            json_ext: None,
                        });
                        self.index.insert(number, i);
                        self.available.insert(i);
                    }
                }
            }
            CodeEvent::CodesReserved { codes, for_server, .. } => {
                for code in codes {
                    if let Some((i, slot)) = self.slot_mut(code) {
                        slot.status = CodeStatus::Reserved;
                        self.available.remove(&i);
                        // codes sent to an offline node are handed out there, never here: only
                        // that node's sync brings them back, assigned
                        if for_server.is_none() {
                            self.reserved.insert(i);
                        }
                    }
                }
            }
            CodeEvent::CodeAssigned { code, insuree_id, json_ext, .. } => {
                if let Some((i, slot)) = self.slot_mut(code) {
                    slot.status = CodeStatus::Assigned;
                    slot.insuree_id = Some(insuree_id.clone());
                    slot.json_ext = json_ext.clone();
                    self.available.remove(&i);
                    self.reserved.remove(&i);
                }
            }
            CodeEvent::ControlNumberLinked { code, control_number, .. } => {
                if let Some((_, slot)) = self.slot_mut(code) {
                    slot.control_number = Some(control_number.clone());
                }
            }
        }
        self
    }
}
