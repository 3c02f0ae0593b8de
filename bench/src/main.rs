//! careledger benchmarks. Every figure is printed as one JSON line on stdout; see bench/README.md.

mod appends;
mod claims;
mod equipment;
mod generate;
mod latency;
mod nats_commands;
mod printer_order;
mod rebuild;
mod relay;
mod requisitions;
mod service;
mod sync_export;
mod sync_import;

use clap::{Parser, Subcommand};

/// The server runs in this process: the same allocator as the `careledger` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "careledger-bench")]
struct Cli {
    /// PostgreSQL admin URL: each run creates (and drops) its own database there.
    #[arg(long, global = true, env = "CARELEDGER_TEST_PG", default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pg_admin: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// GenerateCodes of N codes, request to read model caught up, vs a plain bulk insert.
    Generate {
        #[arg(long, default_value = "sqlite,postgres")]
        backends: String,
        #[arg(long, default_value_t = 1_000_000)]
        number: u32,
    },
    /// Raw appends: single events and batches of 100 from concurrent writers, vs plain inserts;
    /// then catch-up read throughput.
    Appends {
        #[arg(long, default_value = "postgres,sqlite")]
        backends: String,
        #[arg(long, default_value_t = 16)]
        writers: usize,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// PostgreSQL group-commit tasks (as the service's CARELEDGER_PG_COMMITTERS, default 2)
        #[arg(long, default_value_t = 2)]
        committers: usize,
    },
    /// Command latency at an offered rate, and projection lag.
    Latency {
        #[arg(long, default_value = "sqlite,postgres")]
        backends: String,
        #[arg(long, default_value_t = 1000)]
        rate: u32,
        #[arg(long, default_value_t = 10)]
        seconds: u32,
    },
    /// RegisterEquipment over HTTP from concurrent clients: registrations/s, latency, read-model lag,
    /// vs plain INSERTs of equivalent rows.
    Equipment(Clients),
    /// Rebuild of all read models from a log of N events.
    Rebuild {
        #[arg(long, default_value = "sqlite,postgres")]
        backends: String,
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
    },
    /// The relay to a private JetStream: catch-up of a backlog of N events vs raw publishing,
    /// then commit-to-acknowledgement latency at an offered rate.
    Relay {
        #[arg(long, default_value = "postgres,sqlite")]
        backends: String,
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        #[arg(long, default_value_t = 1000)]
        rate: u32,
        #[arg(long, default_value_t = 10)]
        seconds: u32,
    },
    /// Requisition numbers issued per second over HTTP by concurrent clients, vs plain inserts.
    Requisitions {
        #[arg(long, default_value = "postgres")]
        backends: String,
        #[arg(long, default_value_t = 32)]
        writers: usize,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
    },
    /// IssueRequisition from concurrent clients over NATS request/reply, then over HTTP:
    /// throughput and p50/p99 of each, and the ratio.
    NatsCommands(Clients),
    /// SubmitClaim over HTTP against a realistic register: claims/s, latency, read-model lag.
    Claims {
        #[arg(long, default_value = "postgres")]
        backends: String,
        #[arg(long, default_value_t = 100)]
        facilities: usize,
        /// Items and services together.
        #[arg(long, default_value_t = 1000)]
        register: usize,
        #[arg(long, default_value_t = 100_000)]
        insurees: usize,
        #[arg(long, default_value_t = 10_000)]
        claims: usize,
        #[arg(long, default_value_t = 32)]
        clients: usize,
        /// A tiny run (what `smoke` does).
        #[arg(long)]
        smoke: bool,
    },
    /// The sync's export: `GET /fhir/$changes` of a node's claims, insurees and policies, a Bundle
    /// at a time, vs reading the same log plainly; then a re-sync with nothing new.
    SyncExport(SyncSize),
    /// The sync's import: a node's insurees, policies and claims as one Bundle posted to
    /// `POST /fhir`, vs appending the same events plainly.
    SyncImport(SyncSize),
    /// The card printer's order of a batch of N codes (XLSX, ZIP of QR codes, CSV) over HTTP:
    /// seconds and peak memory growth, vs reading the codes at once.
    PrinterOrder {
        #[arg(long, default_value = "sqlite,postgres")]
        backends: String,
        #[arg(long, default_value_t = 1_000_000)]
        number: u32,
    },
    /// A tiny run of every benchmark, to check they still work (figures meaningless).
    Smoke,
}

/// A node's work the sync benchmarks carry (issue #21's size by default).
#[derive(clap::Args)]
struct SyncSize {
    #[arg(long, default_value = "sqlite,postgres")]
    backends: String,
    #[arg(long, default_value_t = 10_000)]
    claims: usize,
    #[arg(long, default_value_t = 2_000)]
    insurees: usize,
}

/// Closed-loop runs of concurrent clients against an in-process server.
#[derive(clap::Args)]
struct Clients {
    #[arg(long, default_value = "postgres")]
    backends: String,
    #[arg(long, default_value_t = 16)]
    clients: usize,
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    careledger_gateway::http_client::install_crypto_provider();
    let cli = Cli::parse();
    let result = run(cli).await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("careledger-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let pg = cli.pg_admin.as_str();
    let each = |backends: &str| backends.split(',').map(|b| b.trim().to_string()).collect::<Vec<_>>();
    match cli.command {
        Command::Generate { backends, number } => {
            for b in each(&backends) {
                generate::run(&b, pg, number).await?;
            }
        }
        Command::Appends { backends, writers, seconds, committers } => {
            for b in each(&backends) {
                appends::run(&b, pg, writers, seconds, committers).await?;
            }
        }
        Command::Latency { backends, rate, seconds } => {
            for b in each(&backends) {
                latency::run(&b, pg, rate, seconds).await?;
            }
        }
        Command::Equipment(Clients { backends, clients, seconds }) => {
            for b in each(&backends) {
                equipment::run(&b, pg, clients, seconds).await?;
            }
        }
        Command::Rebuild { backends, events } => {
            for b in each(&backends) {
                rebuild::run(&b, pg, events).await?;
            }
        }
        Command::Relay { backends, events, rate, seconds } => {
            for b in each(&backends) {
                relay::run(&b, pg, events, rate, seconds).await?;
            }
        }
        Command::Requisitions { backends, writers, seconds } => {
            for b in each(&backends) {
                requisitions::run(&b, pg, writers, seconds).await?;
            }
        }
        Command::NatsCommands(Clients { backends, clients, seconds }) => {
            for b in each(&backends) {
                nats_commands::run(&b, pg, clients, seconds).await?;
            }
        }
        Command::Claims { backends, facilities, register, insurees, claims, clients, smoke } => {
            let size = if smoke {
                claims::Size::smoke()
            } else {
                claims::Size { facilities, register, insurees, claims, clients }
            };
            for b in each(&backends) {
                claims::run(&b, pg, size).await?;
            }
        }
        Command::SyncExport(SyncSize { backends, claims, insurees }) => {
            let size = claims::Size { facilities: 10, register: 100, insurees, claims, clients: 16 };
            for b in each(&backends) {
                sync_export::run(&b, pg, size).await?;
            }
        }
        Command::SyncImport(SyncSize { backends, claims, insurees }) => {
            let size = claims::Size { facilities: 10, register: 100, insurees, claims, clients: 1 };
            for b in each(&backends) {
                sync_import::run(&b, pg, size).await?;
            }
        }
        Command::PrinterOrder { backends, number } => {
            for b in each(&backends) {
                printer_order::run(&b, pg, number).await?;
            }
        }
        Command::Smoke => {
            for b in ["sqlite", "postgres"] {
                generate::run(b, pg, 2_000).await?;
                appends::run(b, pg, 4, 0.3, 4).await?;
                latency::run(b, pg, 100, 1).await?;
                rebuild::run(b, pg, 2_000).await?;
                relay::run(b, pg, 2_000, 100, 1).await?;
                requisitions::run(b, pg, 4, 0.3).await?;
                equipment::run(b, pg, 4, 0.5).await?;
                nats_commands::run(b, pg, 4, 0.3).await?;
                claims::run(b, pg, claims::Size::smoke()).await?;
                sync_export::run(b, pg, claims::Size::smoke()).await?;
                sync_import::run(b, pg, claims::Size::smoke()).await?;
                printer_order::run(b, pg, 2_000).await?;
            }
        }
    }
    Ok(())
}
