//! The insuree code (CHFID) pool: batches of pre-generated codes for a holder, reserved for
//! sending, assigned to insurees, linked to control numbers.
//!
//! The aggregate is the batch ([`CodeBatch`], stream `codes-batch-<id>`): every status change of a
//! code is decided against its batch, so two concurrent reservations of one batch cannot both
//! succeed (optimistic concurrency on the stream) and no code is handed out twice. Uniqueness of
//! codes *across* batches is a set invariant the store enforces when the batch is appended.

mod batch;
mod decide;
mod error;
mod format;

pub use batch::{CodeBatch, CodeSlot, CodeStatus};
pub use decide::{AssignCode, GenerateCodes, LinkControlNumber, ReceiveReservation, ReserveCodes};
pub use error::CodeError;
pub use format::{CodeFormatExt, FormatError};
