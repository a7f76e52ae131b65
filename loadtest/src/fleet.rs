//! A fleet client: one socket and one task that both publishes, at the client's own
//! slow rate (`Schedule::fleet`), and receives on its own topic; and, if it takes
//! part in the reconnect storm, leaves mid-run and comes back to its session.
//!
//! One task and one descriptor per client, unlike mixed (a writer task and a reader
//! task on two descriptors of one socket): at fleet scale the process's descriptor
//! limit and the executor's task count are what run out, and a client that sends a
//! message every few seconds gains nothing from a writer of its own. The task sleeps
//! in its read until the next message is due.

use std::collections::VecDeque;
use std::num::NonZeroU16;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_lite::AsyncWriteExt;
use shardmq::protocol::{encode, Disconnect, Packet, Publish, PublishProperties, QoS};
use shardmq::topic::{TopicFilter, TopicName};

use crate::cli::Rate;
use crate::client::{bound_writes, Conn, ConnError, SocketOpts};
use crate::payload::Header;
use crate::reader::answer;
use crate::reader::ACK_GRACE;
use crate::runner::{Local, Shared, Spec};
use crate::schedule::{Clock, RealClock, Schedule, Step};
use crate::stats::{Live, Stats};
use crate::subscriber::Receiver;

/// QoS 1/2 messages of one client awaiting their ack at most (a fleet client has one
/// or two in flight; the bound is for a broker that stops acking).
const WINDOW: usize = 64;
/// How often a client wakes after the window, to see whether it is done.
const POLL: Duration = Duration::from_millis(100);

/// Who one fleet client is.
pub struct Client {
    pub index: usize,
    pub id: u32,
    pub own: TopicFilter,
    pub peer: TopicName,
    pub reconnects: bool,
}

/// How a stretch of the connection ended.
enum Leg {
    /// Time for the reconnect storm: every ack is in, or the grace has passed.
    Leave,
    /// The run is over.
    Done,
}

/// A client's state across its connections: what the reconnect must not lose.
struct State {
    clock: RealClock,
    schedule: Schedule,
    receiver: Receiver,
    /// Per QoS 1/2 message awaiting its ack, in send order: whether it is measured.
    inflight: VecDeque<bool>,
    packet_id: u16,
    /// The client publishing to this one, and how many messages it sends in all:
    /// its schedule is known, so the client waits for exactly those, not for a quiet
    /// spell (a fleet client hears something every few seconds at best).
    source: u32,
    expected: u64,
    stats: Stats,
}

/// Runs client `client` on `conn` (connected and subscribed) to the end of the run.
pub async fn run(
    spec: Arc<Spec>,
    shared: Arc<Shared>,
    local: &Local,
    start: Instant,
    client: Client,
    mut conn: Conn,
) -> Stats {
    let rate = match spec.rate {
        Rate::PerSec(r) => r,
        // Refused when the spec is made; a fleet is slow by definition.
        Rate::Max => 1.0,
    };
    let n = spec.plan.publishers;
    let source = crate::scenario::fleet::source_of(client.id, n);
    let mut state = State {
        clock: RealClock(start),
        schedule: Schedule::fleet(rate, spec.plan.publishers, client.id, spec.seed),
        receiver: Receiver::new(spec.clone(), shared.clone(), local.recorder.clone(), false),
        inflight: VecDeque::new(),
        packet_id: 0,
        source,
        expected: Schedule::fleet(rate, n, source, spec.seed).messages_before(spec.end_ns()),
        stats: Stats::default(),
    };
    let leave_ns = spec
        .reconnect
        .filter(|_| client.reconnects)
        .map(|r| r.at.as_nanos() as u64);
    let mut leave_ns = leave_ns;
    let result: Result<(), ConnError> = async {
        loop {
            match leg(
                &spec,
                &shared.live,
                &mut state,
                &mut conn,
                &client,
                leave_ns,
            )
            .await?
            {
                Leg::Done => return Ok(()),
                Leg::Leave => {
                    leave_ns = None;
                    say_goodbye(&mut conn).await;
                    let offline = spec.reconnect.map(|r| r.offline).unwrap_or_default();
                    glommio::timer::sleep(offline).await;
                    conn = reconnect(&spec, &state.clock, local, &client, &mut state.stats).await?;
                }
            }
        }
    }
    .await;
    if let Err(e) = result {
        state.stats.error(e.reason());
    }
    let mut stats = state.stats;
    stats.merge(&state.receiver.finish());
    Live::add(&shared.live.errors, stats.error_count());
    say_goodbye(&mut conn).await;
    stats
}

/// Publishes and receives until the reconnect storm (`leave_ns`) or the end.
async fn leg(
    spec: &Spec,
    live: &Live,
    st: &mut State,
    conn: &mut Conn,
    client: &Client,
    leave_ns: Option<u64>,
) -> Result<Leg, ConnError> {
    let end_ns = spec.end_ns();
    let ack_deadline_ns = end_ns + ACK_GRACE.as_nanos() as u64;
    let drain_ns = end_ns + spec.drain.as_nanos() as u64;
    let write_deadline = st.clock.0 + Duration::from_nanos(drain_ns);
    let leave_deadline_ns = leave_ns.map(|at| at + ACK_GRACE.as_nanos() as u64);
    let window = usize::from(conn.receive_maximum.unwrap_or(u16::MAX)).min(WINDOW);
    let mut out = BytesMut::new();
    loop {
        while let Some(packet) = conn.try_decode()? {
            if let Some(answer) = answered(st, packet)? {
                encode(&answer, conn.version, &mut out)
                    .map_err(|e| ConnError::Protocol(e.to_string()))?;
            }
        }
        let now = st.clock.now_ns();
        let leaving = leave_ns.is_some_and(|at| now >= at);
        let mut sent_now = 0;
        if !leaving {
            while st.inflight.len() < window || spec.qos == QoS::AtMostOnce {
                if st.schedule.step(now, end_ns) != Step::Send {
                    break;
                }
                let Some(due) = st.schedule.next_due(now) else {
                    break;
                };
                let measured = spec.measured(due.intended_ns);
                let packet_id = if spec.qos == QoS::AtMostOnce {
                    None
                } else {
                    st.packet_id = st.packet_id.checked_add(1).unwrap_or(1);
                    st.inflight.push_back(measured);
                    NonZeroU16::new(st.packet_id)
                };
                let publish = Publish {
                    dup: false,
                    qos: spec.qos,
                    retain: false,
                    topic: client.peer.clone(),
                    packet_id,
                    payload: Header {
                        publisher: client.id,
                        seq: due.seq,
                        intended_ns: due.intended_ns,
                    }
                    .encode(spec.payload),
                    properties: PublishProperties::default(),
                };
                encode(&Packet::Publish(publish), conn.version, &mut out)
                    .map_err(|e| ConnError::Protocol(format!("encode: {e}")))?;
                st.stats.sent += u64::from(measured);
                sent_now += 1;
            }
        }
        if sent_now > 0 {
            Live::add(&live.sent, sent_now);
        }
        if !out.is_empty() {
            bound_writes(&conn.stream, write_deadline);
            let written = conn.stream.write_all(&out).await;
            out.clear();
            written.map_err(|e| ConnError::Io("publish", e))?;
        }
        st.receiver.feed(now);
        if leaving {
            if st.inflight.is_empty() {
                return Ok(Leg::Leave);
            }
            if leave_deadline_ns.is_some_and(|d| now >= d) {
                st.stats
                    .error("fleet: acknowledgements still missing at the reconnect");
                st.inflight.clear();
                return Ok(Leg::Leave);
            }
        }
        let published = st.schedule.step(now, end_ns) == Step::Finished;
        let mut sent_all = published && st.inflight.is_empty();
        if published && !sent_all && now >= ack_deadline_ns {
            st.stats.error(
                ConnError::Protocol("acknowledgements still missing at the end".into()).reason(),
            );
            st.inflight.clear();
            sent_all = true;
        }
        let received_all =
            now >= drain_ns || (now >= end_ns && st.receiver.has_all_below(st.source, st.expected));
        if sent_all && received_all {
            return Ok(Leg::Done);
        }
        // Sleep in the read until the next thing to do: the next message, the storm,
        // the end of the window, or a poll once the window has ended.
        let mut wake_ns = if now >= end_ns {
            now + POLL.as_nanos() as u64
        } else {
            end_ns
        };
        if !published && !leaving && st.inflight.len() < window {
            wake_ns = wake_ns.min(st.schedule.next_at(now));
        }
        if let Some(at) = leave_ns.filter(|_| !leaving) {
            wake_ns = wake_ns.min(at);
        }
        if leaving {
            wake_ns = wake_ns.min(now + POLL.as_nanos() as u64);
        }
        let wait = Duration::from_nanos(wake_ns.saturating_sub(now)).max(Duration::from_millis(1));
        conn.stream
            .set_read_timeout(Some(wait))
            .map_err(|e| ConnError::Io("set timeout", e.into()))?;
        match conn.read_more("receive").await {
            Err(ConnError::Io(_, e)) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Ok(()) => {}
            Err(e) => return Err(e),
        }
    }
}

/// What one packet from the broker changes, and the answer it needs.
fn answered(st: &mut State, packet: Packet) -> Result<Option<Packet>, ConnError> {
    let answered = answer(&packet, &mut st.stats)?;
    if let Some(publish) = answered.published {
        st.receiver.on_publish(publish, st.clock.now_ns());
    }
    if answered.acked && st.inflight.pop_front() == Some(true) {
        st.stats.acked += 1;
    }
    Ok(answered.reply)
}

/// Comes back to the persistent session after the storm, timing connect to CONNACK.
/// The session keeps the subscription, so none is sent; a broker that forgot the
/// session is an error, and the client subscribes again so the run can go on.
async fn reconnect(
    spec: &Spec,
    clock: &RealClock,
    local: &Local,
    client: &Client,
    stats: &mut Stats,
) -> Result<Conn, ConnError> {
    let hello = spec
        .identity
        .hello(client.index as u64)
        .map_err(|e| ConnError::Protocol(format!("identity: {e:#}")))?;
    let opts = SocketOpts {
        source: spec.source_ip(client.index),
        send_buffer: None,
    };
    let Ok(_permit) = local.handshakes.acquire_permit(1).await else {
        return Err(ConnError::Closed("reconnect"));
    };
    // A broker that stops answering holds each handshake for its 10 s timeout, 256
    // at a time: 1,900 reconnects to a stuck rumqttd kept a 10 s run going for over a
    // minute. What is not back by the end of the drain does not come back.
    if clock.now_ns() >= spec.end_ns() + spec.drain.as_nanos() as u64 {
        return Err(ConnError::Protocol(
            "not reconnected by the end of the run".into(),
        ));
    }
    let began = Instant::now();
    let mut conn = Conn::connect(spec.broker, &hello, spec.version, opts).await?;
    let took = began.elapsed().as_nanos() as u64;
    local.recorder.reconnect.borrow_mut().record_ns(took);
    if !conn.session_present {
        stats.error("fleet: session not present after the reconnect");
        conn.subscribe(client.own.clone(), spec.qos).await?;
    }
    Ok(conn)
}

/// DISCONNECT (so the broker keeps the session without publishing a will), then close.
async fn say_goodbye(conn: &mut Conn) {
    bound_writes(&conn.stream, Instant::now() + Duration::from_millis(100));
    let _ = conn.send(&Packet::Disconnect(Disconnect::default())).await;
    let _ = conn.stream.close().await;
}
