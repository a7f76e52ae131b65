//! The `shardmq` binary. It only parses the command line, loads and validates the
//! config, sets up logging, and hands over to the broker; everything else lives in
//! the library, so tests and embedders start the same broker through `run`.
//! `shardmq events tail` runs the reference event consumer (`events_tail.rs`).

mod events_tail;

use std::env::{self, VarError};
use std::io::{ErrorKind, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context};
use clap::{Parser, Subcommand};
use shardmq::config::{Config, DEFAULT_ORIGIN, DEFAULT_TOML};
use tracing_subscriber::EnvFilter;

/// shardmq: a thread-per-core MQTT broker.
///
/// Without --config it runs on the built-in default config (print it with
/// --print-default-config).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Run on this config file; settings it leaves out keep their defaults.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Accept MQTT clients on ADDR (e.g. 127.0.0.1:18830) instead of the first
    /// [[listeners]] address of the config.
    #[arg(long, value_name = "ADDR")]
    bind: Option<SocketAddr>,

    /// Print the built-in default config, every setting documented, and exit.
    #[arg(long, conflicts_with_all = ["config", "bind", "check_config"])]
    print_default_config: bool,

    /// Check FILE and exit: print "FILE: ok" (exit 0), or what is wrong, where and
    /// how to fix it (exit 1).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["config", "bind"])]
    check_config: Option<PathBuf>,

    /// Read a password from standard input (its first line) and print
    /// "USER:HASH", an argon2id hash, as a line for the [auth] password-file.
    #[arg(long, value_name = "USER", conflicts_with_all = ["config", "bind", "check_config", "print_default_config"])]
    passwd: Option<String>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Tools for the event stream ([[events.sinks]]).
    #[command(subcommand)]
    Events(EventsCommand),
}

#[derive(Debug, Subcommand)]
enum EventsCommand {
    /// The reference consumer: listen on --connect HOST:PORT (a sink's
    /// address), accept the broker's connections and print each event as a
    /// JSON line.
    Tail(events_tail::TailArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = if let Some(Command::Events(EventsCommand::Tail(args))) = &cli.command {
        events_tail::run(args.clone())
    } else if cli.print_default_config {
        write_stdout(DEFAULT_TOML)
    } else if let Some(user) = &cli.passwd {
        password_line(user).and_then(|line| write_stdout(&line))
    } else if let Some(path) = &cli.check_config {
        Config::from_file(path)
            .map_err(anyhow::Error::from)
            .and_then(|_| write_stdout(&format!("{}: ok\n", path.display())))
    } else {
        serve(&cli)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// Writes `text` to stdout; a closed pipe (`shardmq --print-default-config | head`)
/// is not an error, where `print!` would panic.
fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != ErrorKind::BrokenPipe => Err(e).context("cannot write to stdout"),
        _ => Ok(()),
    }
}

/// `USER:HASH` for the password file, the password read from stdin.
fn password_line(user: &str) -> anyhow::Result<String> {
    if user.is_empty() || user.contains(':') || user.contains(char::is_whitespace) {
        bail!("--passwd {user:?}: a username must be non-empty, without ':' or spaces");
    }
    let mut password = String::new();
    std::io::stdin()
        .read_line(&mut password)
        .context("cannot read the password from standard input")?;
    let password = password.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        bail!("--passwd: the password (first line of standard input) is empty");
    }
    let hash = shardmq::auth::hash_password(password)
        .map_err(|e| anyhow!("cannot hash the password: {e}"))?;
    Ok(format!("{user}:{hash}\n"))
}

/// Loads the config, starts logging, and runs the broker until shutdown.
fn serve(cli: &Cli) -> anyhow::Result<()> {
    let (mut config, origin) = match &cli.config {
        Some(path) => (Config::from_file(path)?, path.display().to_string()),
        None => (Config::embedded_default()?, DEFAULT_ORIGIN.to_owned()),
    };
    if let Some(addr) = cli.bind {
        config.set_bind(addr);
        config
            .validate()
            .with_context(|| format!("with --bind {addr}"))?;
    }
    init_logging(&config)?;
    tracing::info!(config = %origin, "configuration loaded");

    // The one call into the broker. It logs each listener's address and the cores
    // it pinned, and returns after SIGINT/SIGTERM once every shard has stopped.
    let shutdown = shards::ShutdownHandle::new();
    shardmq::run(config, shutdown).context("cannot run the broker")
}

/// The error and its causes, each once: many of the broker's messages name
/// their cause already, which `{:#}` would print a second time.
fn describe(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// Logs go to stderr, filtered by `[log] level`, or by `RUST_LOG` when it is set.
fn init_logging(config: &Config) -> anyhow::Result<()> {
    let filter = match env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::try_new(&directives)
            .with_context(|| {
                format!(
                    "RUST_LOG={directives:?} is not a valid tracing filter; it replaces \
                     [log] level when set: fix it (e.g. RUST_LOG=info) or unset it"
                )
            })?,
        Err(VarError::NotUnicode(_)) => {
            bail!("RUST_LOG is not valid UTF-8: fix it (e.g. RUST_LOG=info) or unset it")
        }
        // Validated with the config already.
        _ => EnvFilter::try_new(&config.log.level).context("[log] level")?,
    };
    // Stopping the HTTP listener makes tiny_http's accept fail once, which it
    // logs as an error; nothing is wrong, so it stays quiet unless asked for.
    let filter = match filter.to_string().contains("tiny_http") {
        true => filter,
        false => filter.add_directive("tiny_http=off".parse()?),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours for a terminal, plain text for files and journald.
        .with_ansi(std::io::stderr().is_terminal())
        // When stderr is gone (a closed pipe), drop the logs. The default reports the
        // failure with `eprintln!`, which panics the logging thread; were that the
        // signal thread, SIGTERM would never stop the broker.
        .log_internal_errors(false)
        .try_init()
        .map_err(|e| anyhow!("cannot start logging: {e}"))
}
