//! End to end: the built `shardmq` binary's config options, exit codes and error
//! messages, as a user at a shell sees them; and that the binary hands a loaded
//! config to the broker, serves, and stops on SIGTERM.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const DEFAULT_TOML: &str = include_str!("../configs/default.toml");

/// Runs the binary with `args`, its log filter left to the config.
fn shardmq(args: &[&str]) -> Output {
    shardmq_with_env(args, &[])
}

fn shardmq_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shardmq"));
    command.args(args).env_remove("RUST_LOG");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("cannot run the shardmq binary")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A config file in the temp dir, removed on drop.
struct TempConfig {
    path: PathBuf,
}

impl TempConfig {
    fn new(name: &str, text: &str) -> TempConfig {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "shardmq-config-cli-{}-{n}-{name}.toml",
            std::process::id()
        ));
        fs::write(&path, text).expect("cannot write a temp config");
        TempConfig { path }
    }

    fn path(&self) -> &str {
        self.path.to_str().expect("temp dir path is not UTF-8")
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// `--check-config` on `text` must fail with exit code 1, and its stderr must name
/// the file and `line` (as `FILE:LINE:`) and contain each of `words`.
fn assert_check_fails(name: &str, text: &str, line: usize, words: &[&str]) -> String {
    let file = TempConfig::new(name, text);
    let output = shardmq(&["--check-config", file.path()]);
    let err = stderr(&output);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{name}: exit code; stderr:\n{err}"
    );
    assert_eq!(stdout(&output), "", "{name}: nothing on stdout");
    assert!(err.starts_with("error: "), "{name}:\n{err}");
    let place = format!("{}:{line}:", file.path());
    assert!(err.contains(&place), "{name}: {place} missing from:\n{err}");
    for word in words {
        assert!(err.contains(word), "{name}: {word:?} missing from:\n{err}");
    }
    for noise in ["Error {", "Caused by", "panicked", "RUST_BACKTRACE"] {
        assert!(
            !err.contains(noise),
            "{name}: debug noise {noise:?} in:\n{err}"
        );
    }
    err
}

#[test]
fn print_default_config_prints_default_toml_which_checks_ok() {
    let output = shardmq(&["--print-default-config"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let printed = stdout(&output);
    assert_eq!(printed, DEFAULT_TOML);

    let file = TempConfig::new("printed-default", &printed);
    let output = shardmq(&["--check-config", file.path()]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), format!("{}: ok\n", file.path()));
}

#[test]
fn check_config_accepts_good_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let custom = TempConfig::new(
        "good",
        "[shards]\ncores = [0]\n\n[mqtt]\nmax-inflight = 20\nretry-interval = \"1m 30s\"\n",
    );
    let examples = fs::read_dir(root.join("configs/examples"))
        .expect("configs/examples")
        .map(|e| e.expect("configs/examples entry").path());
    let files: Vec<PathBuf> = [root.join("configs/default.toml"), custom.path.clone()]
        .into_iter()
        .chain(examples)
        .collect();
    for file in files {
        let file = file.to_str().expect("UTF-8 path");
        let output = shardmq(&["--check-config", file]);
        assert_eq!(output.status.code(), Some(0), "{file}: {}", stderr(&output));
        assert_eq!(stdout(&output), format!("{file}: ok\n"));
        assert_eq!(stderr(&output), "");
    }
}

#[test]
fn check_config_unknown_key_lists_the_valid_keys() {
    let err = assert_check_fails(
        "unknown-key",
        "[mqtt]\nmax-inflight = 10\nmax-inflite = 10\n",
        3,
        &["max-inflite", "[mqtt]", "did you mean `max-inflight`?"],
    );
    assert!(
        err.contains(
            "valid keys in [mqtt]: max-packet-size, max-inflight, max-offline-messages, \
             max-online-messages, max-client-id-len, max-keepalive, retry-interval, \
             allowed-protocol-versions, max-topic-levels, max-connections, connect-timeout, \
             queue-overflow"
        ),
        "{err}"
    );
}

#[test]
fn check_config_unknown_section_lists_the_valid_sections() {
    assert_check_fails(
        "unknown-section",
        "[mqtt]\nmax-inflight = 10\n\n[metrics]\nport = 9100\n",
        4,
        &[
            "unknown section [metrics]",
            "valid sections: [shards], [[listeners]], [mqtt], [http], [log], [sys]",
        ],
    );
}

#[test]
fn check_config_value_out_of_range() {
    assert_check_fails(
        "out-of-range",
        "# tiny packets\n[mqtt]\nmax-packet-size = 8\n",
        3,
        &[
            "mqtt.max-packet-size",
            "8 is out of range",
            "allowed: an integer number of bytes from 16 to 268435460",
            "max-packet-size = 1048576",
        ],
    );
}

#[test]
fn check_config_bad_duration() {
    assert_check_fails(
        "bad-duration",
        "[mqtt]\nconnect-timeout = \"10 lightyears\"\n",
        2,
        &[
            "mqtt.connect-timeout",
            "\"10 lightyears\" is not a duration",
            "\"500ms\", \"10s\" or \"1m\"",
        ],
    );
}

#[test]
fn check_config_wrong_type() {
    assert_check_fails(
        "wrong-type",
        "[mqtt]\nmax-inflight = \"many\"\n",
        2,
        &[
            "mqtt.max-inflight",
            "invalid type: string \"many\"",
            "from 1 to 65535",
        ],
    );
}

#[test]
fn check_config_duplicate_cores() {
    assert_check_fails(
        "duplicate-cores",
        "[shards]\ncores = [0, 1, 0]\n",
        2,
        &[
            "shards.cores",
            "CPU 0 is listed twice",
            "distinct CPU numbers",
        ],
    );
}

#[test]
fn check_config_unsupported_protocol() {
    assert_check_fails(
        "tls-listener",
        "[[listeners]]\nbind = \"0.0.0.0:8883\"\nprotocol = \"tls\"\n",
        3,
        &[
            "listeners[0].protocol",
            "\"tls\" is not supported yet",
            "\"tcp\"",
        ],
    );
}

#[test]
fn check_config_missing_file_names_it() {
    let output = shardmq(&["--check-config", "/nonexistent/shardmq.toml"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        "error: cannot read config file /nonexistent/shardmq.toml: No such file or \
         directory (os error 2)\n"
    );
}

#[test]
fn a_bad_config_stops_the_broker_before_it_starts() {
    let file = TempConfig::new("bad-run", "[sys]\ninterval = \"10ms\"\n");
    let output = shardmq(&["--config", file.path()]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.starts_with(&format!("error: {}:2:", file.path())),
        "{err}"
    );
    assert!(err.contains("sys.interval"), "{err}");
}

#[test]
fn a_taken_port_is_named_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("address");
    let file = TempConfig::new(
        "taken",
        &format!("[[listeners]]\nbind = \"{addr}\"\n[http]\nbind = \"127.0.0.1:0\"\n"),
    );
    let output = shardmq(&["--config", file.path()]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!(
            "error: cannot run the broker: could not listen on {addr}"
        )),
        "{err}"
    );
    assert_eq!(
        last.matches("already listening there").count(),
        1,
        "the cause is said once: {last}"
    );
}

#[test]
fn bind_override_is_validated() {
    let file = TempConfig::new("bind-clash", "[http]\nbind = \"127.0.0.1:18888\"\n");
    let output = shardmq(&["--config", file.path(), "--bind", "127.0.0.1:18888"]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.starts_with("error: with --bind 127.0.0.1:18888: "),
        "{err}"
    );
    assert!(err.contains("http.bind"), "{err}");
}

#[test]
fn a_bad_rust_log_is_an_error() {
    let file = TempConfig::new("rust-log", "");
    let output = shardmq_with_env(
        &["--config", file.path()],
        &[("RUST_LOG", "shardmq=loudest")],
    );
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains("RUST_LOG=\"shardmq=loudest\" is not a valid tracing filter"),
        "{err}"
    );
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["--check-config"][..],
        &["--bind", "localhost"],
        &["--bind", "127.0.0.1"],
        &["--config", "a.toml", "--check-config", "b.toml"],
        &["--print-default-config", "--bind", "127.0.0.1:1883"],
        &["--no-such-option"],
    ] {
        let output = shardmq(args);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.starts_with("error: ") && err.contains("--help"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn help_lists_every_option() {
    let output = shardmq(&["--help"]);
    assert!(output.status.success());
    let help = stdout(&output);
    for option in [
        "--config <FILE>",
        "--bind <ADDR>",
        "--print-default-config",
        "--check-config <FILE>",
    ] {
        assert!(help.contains(option), "{option} missing from:\n{help}");
    }
}

/// A broker started from the built binary, killed on drop if still running.
struct RunningBroker {
    child: Child,
    /// The MQTT listener address it logged.
    addr: SocketAddr,
}

impl RunningBroker {
    /// Starts `shardmq args` and waits until it logs its first MQTT listener.
    ///
    /// Its stderr is closed right after that line, before this returns, as when
    /// a log pipe dies: everything the broker logs from then on (the other
    /// listeners, the signal) fails to write. It must still stop on SIGTERM:
    /// tracing's report of the failed write used to panic the thread that logs
    /// the signal, before it triggered the shutdown.
    fn start(args: &[&str]) -> RunningBroker {
        let mut child = Command::new(env!("CARGO_BIN_EXE_shardmq"))
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start shardmq");
        let stderr = child.stderr.take().expect("piped stderr");
        // A thread, so the wait is bounded; it reports only once the pipe is
        // closed.
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(until_mqtt_listener(stderr));
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Ok(addr)) => addr,
            Ok(Err(seen)) => {
                let _ = child.kill();
                panic!(
                    "stderr ended without a \"MQTT listener\" log line:\n{}",
                    seen.join("\n")
                );
            }
            Err(_) => {
                let _ = child.kill();
                panic!("no \"MQTT listener\" log line within 20 s");
            }
        };
        RunningBroker { child, addr }
    }

    /// A v3.1.1 CONNECT gets CONNACK "accepted".
    fn assert_accepts_a_client(&self) {
        let mut stream = TcpStream::connect(self.addr).expect("connect to the broker");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // CONNECT: "MQTT", level 4, clean session, keepalive 60, client id "cli".
        stream
            .write_all(b"\x10\x0f\x00\x04MQTT\x04\x02\x00\x3c\x00\x03cli")
            .unwrap();
        let mut connack = [0u8; 4];
        stream.read_exact(&mut connack).expect("read CONNACK");
        assert_eq!(connack, [0x20, 0x02, 0x00, 0x00], "CONNACK accepted");
        stream.write_all(b"\xe0\x00").unwrap(); // DISCONNECT
    }

    /// SIGTERM, then the exit status within 20 s.
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for shardmq") {
                return status;
            }
            assert!(Instant::now() < deadline, "shardmq did not stop on SIGTERM");
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Reads `stderr` up to the first "MQTT listener addr=" line and returns the
/// address; or the lines seen, if the pipe ended first. Either way `stderr` is
/// dropped, which closes the pipe, before this returns.
fn until_mqtt_listener(stderr: impl Read) -> Result<SocketAddr, Vec<String>> {
    let mut seen = Vec::new();
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        if let Some((_, addr)) = line.split_once("MQTT listener addr=") {
            return Ok(addr.trim().parse().expect("listener address"));
        }
        seen.push(line);
    }
    Err(seen)
}

impl Drop for RunningBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn runs_on_a_config_file_and_stops_on_sigterm() {
    let file = TempConfig::new(
        "serve",
        "[shards]\ncores = [0]\n[[listeners]]\nbind = \"127.0.0.1:0\"\n\
         [http]\nbind = \"127.0.0.1:0\"\n",
    );
    let broker = RunningBroker::start(&["--config", file.path()]);
    assert!(broker.addr.ip().is_loopback() && broker.addr.port() != 0);
    broker.assert_accepts_a_client();
    assert!(broker.terminate().success(), "exit status after SIGTERM");
}

/// The Interface promise: `shardmq --bind ADDR` works with no config file.
#[test]
fn bind_works_without_a_config_file() {
    let broker = RunningBroker::start(&["--bind", "127.0.0.1:0"]);
    broker.assert_accepts_a_client();
    assert!(broker.terminate().success(), "exit status after SIGTERM");
}
