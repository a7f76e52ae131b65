//! `loadtest`: see `loadtest --help`, `loadtest plot --help` and the crate docs.

use std::ffi::OsString;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use loadtest::plot::{self, Run};

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    // `plot` is checked by hand rather than as a clap subcommand so that a run keeps
    // its required --broker and --scenario, exactly as scripts call it.
    let result = if argv.get(1).is_some_and(|a| a == "plot") {
        // "loadtest plot" as the name in usage lines and errors.
        let rest = argv.iter().skip(2).cloned();
        let argv: Vec<OsString> = std::iter::once("loadtest plot".into())
            .chain(rest)
            .collect();
        draw(&loadtest::PlotArgs::parse_from(argv))
    } else {
        run(&loadtest::Args::parse_from(&argv))
    };
    match result {
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
    if let Some(path) = &args.plot {
        let label = format!("{} @ {}", report.scenario, report.broker);
        let title = format!(
            "{}, QoS {}, rate {}: latency by percentile",
            report.scenario, report.qos, report.rate
        );
        plot::draw(&[Run::of(&report, label)], path, &title)
            .with_context(|| format!("--plot {}", path.display()))?;
    }
    Ok(())
}

fn draw(args: &loadtest::PlotArgs) -> anyhow::Result<()> {
    let mut runs = Vec::new();
    let mut scenario = None;
    for path in &args.runs {
        let (run, of) = Run::load(path)?;
        scenario = scenario.or(of);
        if run.percentiles.is_empty() {
            eprintln!(
                "loadtest plot: {}: no latencies (no message sent in its window arrived), left out",
                path.display()
            );
        }
        runs.push(run);
    }
    let title = args.title.clone().unwrap_or_else(|| match scenario {
        Some(s) => format!("{s}: latency by percentile"),
        None => "latency by percentile".into(),
    });
    plot::draw(&runs, &args.out, &title).with_context(|| format!("--out {}", args.out.display()))
}
