//! `loadtest`: see `loadtest --help` and the crate docs.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

fn main() -> ExitCode {
    let args = loadtest::Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line with every cause, no backtrace: these are the user's mistakes
            // or the broker's refusals, not bugs.
            eprintln!("loadtest: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &loadtest::Args) -> anyhow::Result<()> {
    let report = loadtest::execute(args, true)?;
    print!("{}", report.table());
    if let Some(path) = &args.json {
        std::fs::write(path, report.json())
            .with_context(|| format!("--json {}: cannot write", path.display()))?;
    }
    if let Some(path) = &args.hdr {
        std::fs::write(path, &report.distribution.0)
            .with_context(|| format!("--hdr {}: cannot write", path.display()))?;
    }
    Ok(())
}
