//! The node-to-node protocol on the wire: a handshake, then length-prefixed
//! frames.
//!
//! - [`Hello`] opens a link each way: magic, protocol version, node id, boot
//!   id. The boot id names one life of the peer, so a link never carries a
//!   dead life's messages into its successor.
//! - A [`Frame`] is `u32` body length, then the body: a kind byte and its
//!   fields. [`Frame::Batch`] carries several [`Message`]s under one header,
//!   numbered from `first_seq` on the link; [`Frame::Credit`] acknowledges
//!   them and opens the window (`link.rs`); [`Frame::Ping`] keeps an idle
//!   link checked.
//!
//! Sans-IO like `protocol/`: [`decode`] takes what is buffered and returns
//! `Ok(None)` until a whole frame is there. It checks the declared length
//! against the maximum before reserving anything, and never panics, whatever
//! the bytes: every read is bounds-checked and a peer's bytes are never
//! unwrapped.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::message::MessageId;
use crate::protocol::PacketId;
use crate::session::StoredState;
use crate::store::Owner;

/// The first bytes of a [`Hello`].
pub const MAGIC: [u8; 4] = *b"SMQL";
/// The protocol version this build speaks. A peer with another one is
/// refused at the handshake with [`FrameError::Version`]: the cluster runs
/// one version at a time, rolling upgrades are not promised yet.
pub const VERSION: u16 = 2;
/// The largest frame [`decode`] accepts by default.
pub const MAX_FRAME: usize = 16 << 20;

/// A frame or handshake that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("not a shardmq cluster link: magic {0:02x?}")]
    Magic([u8; 4]),
    #[error("peer speaks cluster protocol version {theirs}, this node speaks {ours}: run one version across the cluster")]
    Version { theirs: u16, ours: u16 },
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    TooLong { len: usize, max: usize },
    #[error("frame ends inside {0}")]
    Truncated(&'static str),
    #[error("unknown frame kind {0}")]
    FrameKind(u8),
    #[error("unknown message kind {0}")]
    MessageKind(u8),
    #[error("{0} is not UTF-8")]
    Utf8(&'static str),
    #[error("QoS {0} is not 0, 1 or 2")]
    Qos(u8),
    #[error("delivery state {0} with packet id 0, or unknown")]
    DeliveryState(u8),
    #[error("{0} bytes left over after the frame's fields")]
    Trailing(usize),
}

/// The handshake each side sends first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub version: u16,
    pub node: String,
    pub boot: u64,
}

/// One frame after the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Messages numbered `first_seq`, `first_seq + 1`, … on this link.
    Batch {
        first_seq: u64,
        messages: Vec<Message>,
    },
    /// Every message up to `acked` arrived; the sender may have `window`
    /// more than that in flight.
    Credit {
        acked: u64,
        window: u32,
    },
    Ping {
        nonce: u64,
    },
}

/// A PUBLISH forwarded to a node with subscribers, routed there like a local
/// one; or a message of a session being handed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// The node, and its life, the PUBLISH entered the cluster by: where
    /// [`Message::Accepted`] goes.
    pub origin: Owner,
    /// Numbers the origin's messages, to acknowledge them.
    pub id: u64,
    pub topic: String,
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
    /// MQTT 5 properties, encoded as in the PUBLISH.
    pub properties: Bytes,
}

/// A message of a session's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    /// Sent to the client and not acknowledged yet (resent with DUP).
    pub inflight: bool,
    pub publish: Publish,
}

/// Where the credit for a [`Message::Route`] goes: a connection on the
/// sender's shard `shard`, and whether it was low on credit (then the
/// credit goes back at once, else with other traffic or within a second).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreditTo {
    pub shard: u16,
    pub conn: u64,
    pub low_on_credit: bool,
}

/// What one node says to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Publish(Publish),
    /// The publish `id` of the receiver is in a session queue now: the
    /// receiver may acknowledge it to its publisher.
    Accepted {
        id: u64,
    },
    /// The sender claimed `client_id` at `generation`, after the receiver:
    /// disconnect its client and hand the session over.
    Takeover {
        client_id: String,
        generation: u64,
        new_owner: Owner,
    },
    /// Part of a session's state; more may follow until
    /// [`Message::HandOverDone`].
    HandOver {
        client_id: String,
        generation: u64,
        /// The subscriptions, encoded as the store encodes them.
        subscriptions: Bytes,
        messages: Vec<Queued>,
    },
    HandOverDone {
        client_id: String,
        generation: u64,
    },
    /// A PUBLISH routed to the receiver because it has subscribers: deliver
    /// it to them, and to its members of the share groups in `groups` (the
    /// sender picked the receiver to serve those).
    Route {
        groups: Vec<String>,
        /// The publisher's client id, for no-local subscriptions.
        publisher: String,
        /// The message as an MQTT 5 PUBLISH ([`crate::store::record::encode_message`]).
        message: Bytes,
        /// The same on every node it goes to ([`MessageId`]).
        id: MessageId,
        /// The publishing connection on the sender, if a client published
        /// it: it gets a [`Message::Credit`] back once the message's
        /// recipients here have room ([`crate::broker`]'s flow).
        credit_to: Option<CreditTo>,
    },
    /// Credits for connections on the receiver's shard `shard`:
    /// `(connection, publishes)` routed here whose recipients had room.
    Credit {
        shard: u16,
        credits: Vec<(u64, u32)>,
    },
    /// Answer with [`Message::Stored`] once every [`Message::Route`] sent
    /// before this is queued for its sessions here (and, with `durability =
    /// "messages"`, stored): the sender holds its publishers' PUBACKs until
    /// then. `shard` is the sender's shard that waits.
    Barrier {
        shard: u16,
        ticket: u64,
    },
    /// The answer to a [`Message::Barrier`]: whether everything before it
    /// was taken (`false`: the sender's publishers publish again).
    Stored {
        shard: u16,
        ticket: u64,
        stored: bool,
    },
    /// A message for `client_id`'s session, which the receiver claimed at
    /// `generation` from the sender: routed to the sender after the claim
    /// (other nodes' route indexes learn of the new owner a little later).
    Deliver {
        client_id: String,
        generation: u64,
        /// As stored ([`crate::store::record::encode_delivery`]).
        delivery: Bytes,
        /// The message's id, if it went to other nodes: the receiver may
        /// have it from its publisher's node too.
        id: Option<MessageId>,
        /// How far it got with the client: past `Queued` only for what the
        /// session held when it was taken over (sent before
        /// [`Message::HandOverDone`]).
        state: StoredState,
    },
}

impl Hello {
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_slice(&MAGIC);
        out.put_u16(self.version);
        put_str(out, &self.node);
        out.put_u64(self.boot);
    }

    /// Reads a handshake: `Ok(None)` until it is all there. Refuses another
    /// magic at once, and another version before reading further.
    pub fn decode(buf: &mut BytesMut) -> Result<Option<Hello>, FrameError> {
        let mut r = Reader(&buf[..]);
        let magic = match r.array::<4>("magic") {
            Ok(m) => m,
            Err(_) if MAGIC.starts_with(&buf[..]) => return Ok(None),
            Err(_) => return Err(FrameError::Magic(pad4(buf))),
        };
        if magic != MAGIC {
            return Err(FrameError::Magic(magic));
        }
        let Ok(version) = r.u16("version") else {
            return Ok(None);
        };
        if version != VERSION {
            return Err(FrameError::Version {
                theirs: version,
                ours: VERSION,
            });
        }
        let hello = match (r.str("node id"), r.u64("boot id")) {
            (Ok(node), Ok(boot)) => Hello {
                version,
                node,
                boot,
            },
            (Err(FrameError::Truncated(_)), _) | (_, Err(FrameError::Truncated(_))) => {
                return Ok(None)
            }
            (Err(e), _) | (_, Err(e)) => return Err(e),
        };
        let used = buf.len() - r.0.len();
        buf.advance(used);
        Ok(Some(hello))
    }
}

fn pad4(buf: &[u8]) -> [u8; 4] {
    let mut m = [0; 4];
    for (d, s) in m.iter_mut().zip(buf) {
        *d = *s;
    }
    m
}

impl Frame {
    pub fn encode(&self, out: &mut BytesMut) {
        let start = out.len();
        out.put_u32(0);
        match self {
            Frame::Batch {
                first_seq,
                messages,
            } => {
                out.put_u8(1);
                out.put_u64(*first_seq);
                out.put_u32(messages.len() as u32);
                for m in messages {
                    m.encode(out);
                }
            }
            Frame::Credit { acked, window } => {
                out.put_u8(2);
                out.put_u64(*acked);
                out.put_u32(*window);
            }
            Frame::Ping { nonce } => {
                out.put_u8(3);
                out.put_u64(*nonce);
            }
        }
        let len = (out.len() - start - 4) as u32;
        out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    }
}

/// Reads one frame from `buf`: `Ok(None)` until it is whole. A frame longer
/// than `max` is refused from its length alone.
pub fn decode(buf: &mut BytesMut, max: usize) -> Result<Option<Frame>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > max {
        return Err(FrameError::TooLong { len, max });
    }
    if buf.len() < 4 + len {
        buf.reserve(4 + len - buf.len());
        return Ok(None);
    }
    buf.advance(4);
    let body = buf.split_to(len).freeze();
    let mut r = Reader(&body[..]);
    let frame = match r.u8("frame kind")? {
        1 => {
            let first_seq = r.u64("first seq")?;
            let count = r.u32("message count")?;
            // Each message takes at least a byte: a count past the body is a lie,
            // and is not trusted to size a Vec.
            let mut messages = Vec::with_capacity((count as usize).min(r.0.len()));
            for _ in 0..count {
                messages.push(Message::decode(&mut r)?);
            }
            Frame::Batch {
                first_seq,
                messages,
            }
        }
        2 => Frame::Credit {
            acked: r.u64("acked")?,
            window: r.u32("window")?,
        },
        3 => Frame::Ping {
            nonce: r.u64("nonce")?,
        },
        k => return Err(FrameError::FrameKind(k)),
    };
    if !r.0.is_empty() {
        return Err(FrameError::Trailing(r.0.len()));
    }
    Ok(Some(frame))
}

impl Message {
    fn encode(&self, out: &mut BytesMut) {
        match self {
            Message::Publish(p) => {
                out.put_u8(1);
                p.encode(out);
            }
            Message::Accepted { id } => {
                out.put_u8(2);
                out.put_u64(*id);
            }
            Message::Takeover {
                client_id,
                generation,
                new_owner,
            } => {
                out.put_u8(3);
                put_str(out, client_id);
                out.put_u64(*generation);
                put_owner(out, new_owner);
            }
            Message::HandOver {
                client_id,
                generation,
                subscriptions,
                messages,
            } => {
                out.put_u8(4);
                put_str(out, client_id);
                out.put_u64(*generation);
                put_bytes(out, subscriptions);
                out.put_u32(messages.len() as u32);
                for q in messages {
                    out.put_u8(q.inflight as u8);
                    q.publish.encode(out);
                }
            }
            Message::HandOverDone {
                client_id,
                generation,
            } => {
                out.put_u8(5);
                put_str(out, client_id);
                out.put_u64(*generation);
            }
            Message::Route {
                groups,
                publisher,
                message,
                id,
                credit_to,
            } => {
                out.put_u8(6);
                out.put_u16(groups.len().min(u16::MAX as usize) as u16);
                for g in groups.iter().take(u16::MAX as usize) {
                    put_str(out, g);
                }
                put_str(out, publisher);
                put_bytes(out, message);
                put_id(out, id);
                match credit_to {
                    Some(c) => {
                        out.put_u8(1 + u8::from(c.low_on_credit));
                        out.put_u16(c.shard);
                        out.put_u64(c.conn);
                    }
                    None => out.put_u8(0),
                }
            }
            Message::Credit { shard, credits } => {
                out.put_u8(10);
                out.put_u16(*shard);
                out.put_u32(credits.len() as u32);
                for (conn, n) in credits {
                    out.put_u64(*conn);
                    out.put_u32(*n);
                }
            }
            Message::Barrier { shard, ticket } => {
                out.put_u8(7);
                out.put_u16(*shard);
                out.put_u64(*ticket);
            }
            Message::Stored {
                shard,
                ticket,
                stored,
            } => {
                out.put_u8(8);
                out.put_u16(*shard);
                out.put_u64(*ticket);
                out.put_u8(*stored as u8);
            }
            Message::Deliver {
                client_id,
                generation,
                delivery,
                id,
                state,
            } => {
                out.put_u8(9);
                put_str(out, client_id);
                out.put_u64(*generation);
                put_bytes(out, delivery);
                match id {
                    Some(id) => {
                        out.put_u8(1);
                        put_id(out, id);
                    }
                    None => out.put_u8(0),
                }
                let (kind, packet_id) = match state {
                    StoredState::Queued => (0, 0),
                    StoredState::Sent(p) => (1, p.get()),
                    StoredState::Released(p) => (2, p.get()),
                };
                out.put_u8(kind);
                out.put_u16(packet_id);
            }
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Message, FrameError> {
        Ok(match r.u8("message kind")? {
            1 => Message::Publish(Publish::decode(r)?),
            2 => Message::Accepted { id: r.u64("id")? },
            3 => Message::Takeover {
                client_id: r.str("client id")?,
                generation: r.u64("generation")?,
                new_owner: r.owner()?,
            },
            4 => {
                let client_id = r.str("client id")?;
                let generation = r.u64("generation")?;
                let subscriptions = r.bytes("subscriptions")?;
                let count = r.u32("message count")?;
                let mut messages = Vec::with_capacity((count as usize).min(r.0.len()));
                for _ in 0..count {
                    let inflight = r.u8("inflight flag")? != 0;
                    messages.push(Queued {
                        inflight,
                        publish: Publish::decode(r)?,
                    });
                }
                Message::HandOver {
                    client_id,
                    generation,
                    subscriptions,
                    messages,
                }
            }
            5 => Message::HandOverDone {
                client_id: r.str("client id")?,
                generation: r.u64("generation")?,
            },
            6 => {
                let count = r.u16("group count")?;
                // Each group takes at least its two length bytes.
                let mut groups = Vec::with_capacity((count as usize).min(r.0.len() / 2));
                for _ in 0..count {
                    groups.push(r.str("share group")?);
                }
                Message::Route {
                    groups,
                    publisher: r.str("publisher")?,
                    message: r.bytes("message")?,
                    id: r.id()?,
                    credit_to: match r.u8("credit flag")? {
                        0 => None,
                        flag => Some(CreditTo {
                            shard: r.u16("shard")?,
                            conn: r.u64("connection")?,
                            low_on_credit: flag > 1,
                        }),
                    },
                }
            }
            10 => {
                let shard = r.u16("shard")?;
                let count = r.u32("credit count")?;
                // Each credit takes 12 bytes.
                let mut credits = Vec::with_capacity((count as usize).min(r.0.len() / 12));
                for _ in 0..count {
                    credits.push((r.u64("connection")?, r.u32("credits")?));
                }
                Message::Credit { shard, credits }
            }
            7 => Message::Barrier {
                shard: r.u16("shard")?,
                ticket: r.u64("ticket")?,
            },
            8 => Message::Stored {
                shard: r.u16("shard")?,
                ticket: r.u64("ticket")?,
                stored: r.u8("stored flag")? != 0,
            },
            9 => Message::Deliver {
                client_id: r.str("client id")?,
                generation: r.u64("generation")?,
                delivery: r.bytes("delivery")?,
                id: match r.u8("id flag")? {
                    0 => None,
                    _ => Some(r.id()?),
                },
                state: r.state()?,
            },
            k => return Err(FrameError::MessageKind(k)),
        })
    }
}

impl Publish {
    fn encode(&self, out: &mut BytesMut) {
        put_owner(out, &self.origin);
        out.put_u64(self.id);
        put_str(out, &self.topic);
        put_bytes(out, &self.payload);
        out.put_u8(self.qos | (self.retain as u8) << 2);
        put_bytes(out, &self.properties);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Publish, FrameError> {
        let origin = r.owner()?;
        let id = r.u64("id")?;
        let topic = r.str("topic")?;
        let payload = r.bytes("payload")?;
        let flags = r.u8("flags")?;
        let qos = flags & 0b11;
        if qos == 3 || flags & !0b111 != 0 {
            return Err(FrameError::Qos(flags));
        }
        Ok(Publish {
            origin,
            id,
            topic,
            payload,
            qos,
            retain: flags & 0b100 != 0,
            properties: r.bytes("properties")?,
        })
    }
}

/// Client ids and topics fit in 65,535 bytes (MQTT's own limit); a longer
/// string is cut there, and the peer refuses it if the cut split a character.
fn put_str(out: &mut BytesMut, s: &str) {
    let n = s.len().min(u16::MAX as usize);
    out.put_u16(n as u16);
    out.put_slice(&s.as_bytes()[..n]);
}

fn put_bytes(out: &mut BytesMut, b: &[u8]) {
    out.put_u32(b.len() as u32);
    out.put_slice(b);
}

fn put_owner(out: &mut BytesMut, o: &Owner) {
    put_str(out, &o.node);
    out.put_u64(o.boot);
}

fn put_id(out: &mut BytesMut, id: &MessageId) {
    out.put_u64(id.shard);
    out.put_u64(id.seq);
}

/// Bounds-checked reads over a frame's body.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&[u8], FrameError> {
        if self.0.len() < n {
            return Err(FrameError::Truncated(what));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], FrameError> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, FrameError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, FrameError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, FrameError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, FrameError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    fn str(&mut self, what: &'static str) -> Result<String, FrameError> {
        let n = self.u16(what)? as usize;
        let raw = self.take(n, what)?;
        String::from_utf8(raw.to_vec()).map_err(|_| FrameError::Utf8(what))
    }

    /// Copied out: a message kept in a queue must not pin the read buffer.
    fn bytes(&mut self, what: &'static str) -> Result<Bytes, FrameError> {
        let n = self.u32(what)? as usize;
        Ok(Bytes::copy_from_slice(self.take(n, what)?))
    }

    fn id(&mut self) -> Result<MessageId, FrameError> {
        Ok(MessageId {
            shard: self.u64("message id")?,
            seq: self.u64("message id")?,
        })
    }

    fn state(&mut self) -> Result<StoredState, FrameError> {
        let kind = self.u8("delivery state")?;
        let packet_id = PacketId::new(self.u16("packet id")?);
        Ok(match (kind, packet_id) {
            (0, _) => StoredState::Queued,
            (1, Some(p)) => StoredState::Sent(p),
            (2, Some(p)) => StoredState::Released(p),
            _ => return Err(FrameError::DeliveryState(kind)),
        })
    }

    fn owner(&mut self) -> Result<Owner, FrameError> {
        Ok(Owner {
            node: self.str("owner node")?,
            boot: self.u64("owner boot")?,
        })
    }
}

#[cfg(test)]
mod tests;
