//! `careledger`: serve, migrate, mint tokens, rebuild projections.

fn main() -> std::process::ExitCode {
    careledger_gateway::cli::main()
}
