//! The `shardmq` binary: parse the command line and act on it.

use anyhow::bail;
use clap::Parser;

/// The embedded default configuration, documented setting by setting.
const DEFAULT_CONFIG: &str = include_str!("../configs/default.toml");

/// shardmq: a thread-per-core MQTT broker.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Print the embedded default configuration and exit.
    #[arg(long)]
    print_default_config: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.print_default_config {
        print!("{DEFAULT_CONFIG}");
        return Ok(());
    }
    bail!(
        "shardmq {} has its protocol codec and topic engine but no network listener yet; \
         serving clients arrives with the broker issue. Try --print-default-config.",
        env!("CARGO_PKG_VERSION")
    )
}
