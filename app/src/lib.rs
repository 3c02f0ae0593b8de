//! The application layer (DESIGN "The way a request travels"): what every command does whatever
//! transport brought it. A transport (HTTP, NATS, a FHIR bundle of the coming sync) reads its
//! request into typed inputs and a [`RequestMeta`], and this crate runs the command: the
//! aggregate cache and its catch-up with the log, the idempotency record, the append with its
//! metadata and metrics, conflicts retried, and one typed [`AppError`]. It knows no HTTP and no
//! NATS (`cargo tree -p careledger-app` shows neither axum nor async-nats).
//!
//! [`commands::COMMANDS`] is the one table of commands: their names (recorded in every event's
//! `metadata.command`, counted in metrics, the NATS subjects), contexts and operations.
//!
//! Issue #18 moves the contexts here one by one: the machinery came first (from the gateway's
//! `handler.rs`, now a thin adapter), then requisitions ([`requisitions`]) and the code pool ([`codes`]): the gateway's
//! handler reads the request and renders the answer, this crate runs the command.

pub mod aggregates;
pub mod answer;
pub mod caller;
pub mod claims;
pub mod codes;
pub mod command;
pub mod commands;
pub mod error;
pub mod insurees;
pub mod registry;
pub mod requisitions;
pub mod sync;

pub use aggregates::{AggregateCache, Loaded, catch_up, fold, load};
pub use answer::Answer;
pub use caller::{AuditScope, Caller};
pub use command::{CommandCtx, CommitError, MAX_ATTEMPTS, RequestMeta};
pub use commands::{COMMANDS, Command, Context, Operation, Permissions};
pub use error::{AppError, Invalid, Rule};
