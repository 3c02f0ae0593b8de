//! `careledger`: serve, migrate, mint tokens, rebuild projections.

/// mimalloc instead of glibc's malloc: under load, glibc's malloc and free (with its
/// `malloc_consolidate`) took a third of the server's own CPU (README, "Why").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    careledger_gateway::cli::main()
}
