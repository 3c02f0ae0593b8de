//! The insuree and the policy as their streams fold them.

use careledger_events::insurees::{EnrolledPolicy, InsureeEvent, RegisteredInsuree};

use crate::Aggregate;

/// An insuree: nothing until registered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Insuree {
    pub registered: Option<RegisteredInsuree>,
}

impl Insuree {
    pub fn exists(&self) -> bool {
        self.registered.is_some()
    }

    /// Whether the insuree heads a family (a registered insuree with no family head).
    pub fn is_head(&self) -> bool {
        self.registered.as_ref().is_some_and(|i| i.family_head.is_none())
    }
}

impl Aggregate for Insuree {
    type Event = InsureeEvent;

    fn evolve(mut self, event: &InsureeEvent) -> Self {
        if let InsureeEvent::InsureeRegistered { insuree, .. } = event {
            self.registered = Some(insuree.clone());
        }
        self
    }
}

/// A policy: nothing until enrolled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub enrolled: Option<EnrolledPolicy>,
}

impl Aggregate for Policy {
    type Event = InsureeEvent;

    fn evolve(mut self, event: &InsureeEvent) -> Self {
        if let InsureeEvent::PolicyEnrolled { policy, .. } = event {
            self.enrolled = Some(policy.clone());
        }
        self
    }
}
