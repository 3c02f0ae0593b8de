//! Enrolment: insurees registered with an insurance number drawn from the codes reserved to who
//! enrols them, and insurees enrolled in policies (openIMIS' `insuree` and `policy` modules, and
//! what an offline node does in the sync seed).
//!
//! The aggregates are the insuree ([`Insuree`], stream `insurees-insuree-<id>`) and the policy
//! ([`Policy`], stream `insurees-policy-<id>`). Registering decides on three states at once: the
//! new insuree's, its family head's (when it joins a family) and a batch of the holder's codes,
//! whose oldest reserved code it takes; the application appends the insuree's event and the
//! batch's `CodeAssigned` in one transaction, expecting both streams' versions, so a code is never
//! handed out twice.

mod enrol;
mod error;
mod insuree;
mod register;

pub use enrol::{EnrolInPolicy, MAX_POLICY_YEARS};
pub use error::InsureeError;
pub use insuree::{Insuree, Policy};
pub use register::{RegisterInsuree, Registration};

/// The longest name, phone, location and holder code an insuree is registered with.
pub const MAX_NAME: usize = 100;
pub const MAX_PHONE: usize = 50;
pub const MAX_LOCATION: usize = 50;
