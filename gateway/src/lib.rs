//! The careledger gateway: the transports (the HTTP API and its FHIR face, the NATS command intake,
//! the relay), authentication, configuration and the CLI.
//!
//! A request is authenticated (Bearer JWT) and parsed into typed inputs; the application layer
//! (`careledger-app`) checks the permission, loads the aggregate, lets the pure domain decide and
//! appends the events with optimistic concurrency; projectors (running in this process) fold
//! them into the read models that queries read.

pub mod auth;
pub mod claims;
pub mod cli;
pub mod codes;
pub mod config;
pub mod fhir;
pub mod handler;
pub mod http;
pub mod http_client;
pub mod insurees;
pub mod intake;
pub mod nats_url;
pub mod registry;
pub mod relay;
pub mod requisitions;
pub mod server;
pub mod state;
pub mod sync_conflicts;
pub mod sync_files;
pub mod sync_peer;
pub mod tail;

pub use config::Config;
pub use server::{RunningServer, start};
