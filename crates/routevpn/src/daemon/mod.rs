//! The daemon: owns sockets, clocks, randomness and the tokio runtime, and drives the
//! sans-IO IKE sessions (one per `[[tunnel]]`).

mod dispatch;
mod drop_watch;
mod event_loop;
mod hooks;
mod io;
mod notify;
mod pacing;
mod reload;
mod resolve;
mod setup;
mod status;
mod tunnel;

use crate::config::Config;
use anyhow::Context as _;
use std::path::PathBuf;

/// Runs the daemon until SIGTERM/SIGINT; on the way out every IKE SA is deleted so the
/// peers take their tunnels down at once.
pub fn run(cfg: Config, socket: PathBuf, config_path: PathBuf) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(event_loop::Daemon::new(cfg, socket, config_path)?.run())
}
