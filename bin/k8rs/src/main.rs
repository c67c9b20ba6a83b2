//! `k8rs`: one binary that runs a whole cluster. `k8rs server` runs the control plane and a
//! node; `k8rs hollow-nodes` simulates many nodes for tests and benchmarks.

mod agent;
mod controllers;
mod flags;
mod hollow;
mod server;

use anyhow::Result;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// glibc's allocator took a quarter of the API server's CPU under load (profiled on the
/// scheduler benchmark); mimalloc's thread-local free lists suit tokio's work-stealing threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "k8rs", version, about = "Kubernetes in one binary")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a control plane (API server with its store) and, unless disabled, a node.
    Server(server::ServerArgs),
    /// Simulate many nodes (as kubemark's hollow nodes): register them, keep them alive and
    /// play the kubelet's part for the pods bound to them, without running containers.
    HollowNodes(hollow::HollowArgs),
    /// Join a node to a cluster with the server's join token and run it.
    Agent(agent::AgentArgs),
    /// Stop every pod, containerd and its shims that a node started, and clean up its network.
    Killall(agent::KillallArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("K8RS_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Server(args) => runtime.block_on(server::server(args)),
        Command::HollowNodes(args) => runtime.block_on(hollow::hollow_nodes(args)),
        Command::Agent(args) => runtime.block_on(agent::agent(args)),
        Command::Killall(args) => runtime.block_on(agent::killall(args)),
    }
}

fn spawn_signal_handler(shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(err) => {
                    tracing::error!(%err, "cannot listen for SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        }
        shutdown.cancel();
    });
}
