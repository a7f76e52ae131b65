//! `loadtest`: see `loadtest --help` and the crate docs.

use anyhow::Context;
use clap::Parser;

fn main() -> anyhow::Result<()> {
    let args = loadtest::Args::parse();
    let report = loadtest::execute(&args, true)?;
    print!("{}", report.table());
    if let Some(path) = &args.json {
        std::fs::write(path, report.json())
            .with_context(|| format!("--json {}: cannot write", path.display()))?;
    }
    Ok(())
}
