//! `shardmq events tail --connect HOST:PORT`: the reference consumer of the
//! event stream, and the worked example of how to write one.
//!
//! The broker connects out to its sinks, so the consumer listens: point an
//! `[[events.sinks]] address` at HOST:PORT. Each connection starts with the
//! native magic `SMQE` (batched frames) or not (vmq-compat frames: a 4-byte
//! length and a `google.protobuf.Any`). Every event is printed as one JSON
//! line, its fields named as in `proto/`, decoded with the schema the broker
//! was built with ([`DESCRIPTOR_SET`]), so this file knows no message by
//! hand. Payloads are printed as (lossy) UTF-8 text.
//!
//! Plain threads, one per connection: a consumer is simple, and the broker
//! never waits for it anyway.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use bytes::{Buf, BytesMut};
use prost::encoding::decode_varint;
use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, EnumDescriptorProto, FileDescriptorSet};
use serde_json::{json, Map, Value};
use shardmq::events::frame::{decode_native, decode_vmq, encode_ack, Ack, NATIVE_MAGIC};
use shardmq::events::schema::DESCRIPTOR_SET;

/// The largest frame accepted from a broker.
const MAX_FRAME: usize = 64 << 20;

/// `shardmq events tail`.
#[derive(Debug, Clone, clap::Args)]
pub struct TailArgs {
    /// Listen on HOST:PORT, where a sink's `address` points the broker.
    #[arg(long, value_name = "HOST:PORT")]
    connect: String,
    /// Ack each native frame (for sinks with `acks = true`).
    #[arg(long)]
    ack: bool,
    /// Print, once a second, events/s and the sequence gaps per shard instead
    /// of the events.
    #[arg(long)]
    count: bool,
}

/// Listens and serves each broker connection on a thread, until killed.
pub fn run(args: TailArgs) -> anyhow::Result<()> {
    let listener = TcpListener::bind(&args.connect)
        .with_context(|| format!("cannot listen on {}", args.connect))?;
    eprintln!("events tail: listening on {}", listener.local_addr()?);
    let schema = Arc::new(Schema::load()?);
    let counts = Arc::new(Mutex::new(Counts::default()));
    if args.count {
        let counts = counts.clone();
        thread::spawn(move || report(&counts));
    }
    for stream in listener.incoming() {
        let stream = stream.context("accept")?;
        let peer = stream.peer_addr()?;
        eprintln!("events tail: {peer} connected");
        let (args, schema, counts) = (args.clone(), schema.clone(), counts.clone());
        thread::spawn(move || match consume(stream, &args, &schema, &counts) {
            Ok(()) => eprintln!("events tail: {peer} closed"),
            Err(e) => eprintln!("events tail: {peer}: {e:#}"),
        });
    }
    Ok(())
}

/// Decodes one connection's frames until it closes.
fn consume(
    mut stream: TcpStream,
    args: &TailArgs,
    schema: &Schema,
    counts: &Mutex<Counts>,
) -> anyhow::Result<()> {
    let mut buf = BytesMut::new();
    let mut chunk = vec![0; 64 * 1024];
    // Decided by the connection's first four bytes.
    let mut native = None;
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() < NATIVE_MAGIC.len() {
            continue;
        }
        let native = *native.get_or_insert_with(|| buf.starts_with(&NATIVE_MAGIC));
        let mut out = std::io::stdout().lock();
        if native {
            while let Some(frame) = decode_native(&mut buf, MAX_FRAME)? {
                let count = frame.events.len() as u64;
                if args.count {
                    counts
                        .lock()
                        .unwrap()
                        .record(frame.shard, frame.first_seq, count);
                }
                for (seq, event) in (frame.first_seq..).zip(&frame.events) {
                    if !args.count {
                        let mut line = schema.decode("shardmq.events.v1.Event", event)?;
                        line["shard"] = json!(frame.shard);
                        line["seq"] = json!(seq);
                        writeln!(out, "{line}")?;
                    }
                }
                if args.ack && count > 0 {
                    let mut ack = BytesMut::new();
                    let seq = frame.first_seq + count - 1;
                    encode_ack(
                        Ack {
                            shard: frame.shard,
                            seq,
                        },
                        &mut ack,
                    );
                    stream.write_all(&ack)?;
                }
            }
        } else {
            while let Some(any) = decode_vmq(&mut buf, MAX_FRAME)? {
                if args.count {
                    counts.lock().unwrap().total += 1;
                    continue;
                }
                let any = prost_types::Any::decode(any)?;
                let name = any.type_url.rsplit('/').next().unwrap_or_default();
                let event = schema.decode(name, &any.value)?;
                writeln!(out, "{}", json!({ "type": name, "event": event }))?;
            }
        }
    }
}

/// What `--count` reports.
#[derive(Debug, Default)]
struct Counts {
    /// Events since the last report.
    total: u64,
    /// Per shard: the lowest and highest sequence numbers seen, and how
    /// many events.
    shards: BTreeMap<u16, (u64, u64, u64)>,
}

impl Counts {
    fn record(&mut self, shard: u16, first_seq: u64, count: u64) {
        if count == 0 {
            return;
        }
        self.total += count;
        let last_seq = first_seq + count - 1;
        let (first, last, seen) = self.shards.entry(shard).or_insert((first_seq, 0, 0));
        *first = (*first).min(first_seq);
        *last = (*last).max(last_seq);
        *seen += count;
    }
}

/// Once a second: events/s and, per shard, the numbers never seen (events
/// the broker dropped; replays after a reconnect can hide some).
fn report(counts: &Mutex<Counts>) {
    loop {
        thread::sleep(Duration::from_secs(1));
        let mut c = counts.lock().unwrap();
        let shards: Map<String, Value> = c
            .shards
            .iter()
            .map(|(shard, &(first, last, seen))| {
                let missing = (last - first + 1).saturating_sub(seen);
                (
                    shard.to_string(),
                    json!({ "last_seq": last, "missing": missing }),
                )
            })
            .collect();
        println!("{}", json!({ "events_per_sec": c.total, "shards": shards }));
        c.total = 0;
    }
}

/// Message and enum descriptors by full name (`eventssidecar.v1.OnPublish`).
struct Schema {
    messages: HashMap<String, DescriptorProto>,
    enums: HashMap<String, EnumDescriptorProto>,
}

/// A field's value as the wire has it.
enum Raw<'a> {
    Varint(u64),
    Fixed(u64),
    Bytes(&'a [u8]),
}

impl Schema {
    fn load() -> anyhow::Result<Schema> {
        let set = FileDescriptorSet::decode(DESCRIPTOR_SET)?;
        let mut schema = Schema {
            messages: HashMap::new(),
            enums: HashMap::new(),
        };
        for file in set.file {
            let package = file.package().to_owned();
            for message in file.message_type {
                schema.add(&package, message);
            }
            for e in file.enum_type {
                schema.enums.insert(format!("{package}.{}", e.name()), e);
            }
        }
        Ok(schema)
    }

    fn add(&mut self, scope: &str, message: DescriptorProto) {
        let name = format!("{scope}.{}", message.name());
        for e in &message.enum_type {
            self.enums.insert(format!("{name}.{}", e.name()), e.clone());
        }
        for nested in &message.nested_type {
            self.add(&name, nested.clone());
        }
        self.messages.insert(name, message);
    }

    /// Decodes an encoded message of type `name` into a JSON object.
    fn decode(&self, name: &str, mut buf: &[u8]) -> anyhow::Result<Value> {
        let name = name.trim_start_matches('.');
        if name == "google.protobuf.Timestamp" {
            let ts = prost_types::Timestamp::decode(buf)?;
            let time = SystemTime::try_from(ts)?;
            return Ok(json!(humantime::format_rfc3339_micros(time).to_string()));
        }
        let Some(message) = self.messages.get(name) else {
            bail!("unknown message type {name}");
        };
        let mut object = Map::new();
        while buf.has_remaining() {
            let key = decode_varint(&mut buf)?;
            let raw = match key & 7 {
                0 => Raw::Varint(decode_varint(&mut buf)?),
                1 if buf.len() >= 8 => Raw::Fixed(buf.get_u64_le()),
                5 if buf.len() >= 4 => Raw::Fixed(u64::from(buf.get_u32_le())),
                2 => {
                    let len = usize::try_from(decode_varint(&mut buf)?)?;
                    if len > buf.len() {
                        bail!("{name}: a field runs past the message");
                    }
                    let (bytes, rest) = buf.split_at(len);
                    buf = rest;
                    Raw::Bytes(bytes)
                }
                wire => bail!("{name}: unexpected wire type {wire}"),
            };
            let number = (key >> 3) as i32;
            // Fields this build does not know are skipped, as protobuf does.
            let Some(field) = message.field.iter().find(|f| f.number() == number) else {
                continue;
            };
            let value = self.value(field.r#type(), field.type_name(), raw)?;
            if field.label() != Label::Repeated {
                object.insert(field.name().to_owned(), value);
            } else if self.is_map(field.type_name()) {
                // A map entry is a message {key, value}: gather them in an object.
                let entries = object.entry(field.name()).or_insert_with(|| json!({}));
                let key = match &value["key"] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                entries[key] = value["value"].clone();
            } else {
                let list = object.entry(field.name()).or_insert_with(|| json!([]));
                if let Value::Array(list) = list {
                    list.push(value);
                }
            }
        }
        Ok(Value::Object(object))
    }

    fn value(&self, kind: Type, type_name: &str, raw: Raw<'_>) -> anyhow::Result<Value> {
        Ok(match (kind, raw) {
            (Type::Message, Raw::Bytes(b)) => self.decode(type_name, b)?,
            (Type::String | Type::Bytes, Raw::Bytes(b)) => json!(String::from_utf8_lossy(b)),
            (Type::Bool, Raw::Varint(v)) => json!(v != 0),
            (Type::Int32 | Type::Enum, Raw::Varint(v)) => {
                let n = v as i32;
                let name = self
                    .enums
                    .get(type_name.trim_start_matches('.'))
                    .and_then(|e| {
                        e.value
                            .iter()
                            .find(|value| value.number() == n)
                            .map(|v| v.name())
                    });
                name.map_or(json!(n), |name| json!(name))
            }
            (Type::Int64, Raw::Varint(v)) => json!(v as i64),
            (_, Raw::Varint(v) | Raw::Fixed(v)) => json!(v),
            (_, Raw::Bytes(b)) => json!(String::from_utf8_lossy(b)),
        })
    }

    fn is_map(&self, type_name: &str) -> bool {
        self.messages
            .get(type_name.trim_start_matches('.'))
            .is_some_and(|m| m.options.as_ref().is_some_and(|o| o.map_entry()))
    }
}
