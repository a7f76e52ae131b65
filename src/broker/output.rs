//! What each connection has to send, and which connections have something new.

use crate::hash::HashMap;

use bytestring::ByteString;

use super::ConnId;
use crate::protocol::{Packet, ReasonCode};

/// What one connection has to send, and whether it must close.
#[derive(Debug, Default)]
pub struct Output {
    pub packets: Vec<Packet>,
    /// Set when the broker closes the connection (takeover, shutdown): the
    /// writer sends what is queued, then a DISCONNECT with this reason to an
    /// MQTT 5 client, then closes.
    pub close: Option<ReasonCode>,
}

/// The outputs of all connections on the shard, plus the list of connections
/// whose output went from empty to non-empty, so the I/O layer wakes exactly
/// those writers.
#[derive(Debug, Default)]
pub(super) struct Outputs {
    map: HashMap<ConnId, Output>,
    dirty: Vec<ConnId>,
    /// Connections told to close since the last [`Outputs::take_closing`]: their
    /// writers may be stuck writing to a client that does not read, and must
    /// be interrupted, not just woken.
    closing: Vec<ConnId>,
    /// The last online recipient found past half its bound while routing,
    /// since the last [`Outputs::take_congested`]: the publisher's reader waits
    /// for it to drain instead of making it drop (see [`crate::broker::Broker::take_congested`]).
    congested: Option<(ConnId, ByteString)>,
}

impl Outputs {
    /// The output of `conn`, marking it for a wake-up.
    pub(super) fn to(&mut self, conn: ConnId) -> &mut Output {
        let dirty = &mut self.dirty;
        self.map.entry(conn).or_insert_with(|| {
            dirty.push(conn);
            Output::default()
        })
    }

    /// Tells `conn` to close with `reason` once its queued packets are sent.
    pub(super) fn close(&mut self, conn: ConnId, reason: ReasonCode) {
        self.to(conn).close = Some(reason);
        self.closing.push(conn);
    }

    pub(super) fn close_reason(&self, conn: ConnId) -> Option<ReasonCode> {
        self.map.get(&conn).and_then(|o| o.close)
    }

    pub(super) fn set_congested(&mut self, conn: ConnId, client: &ByteString) {
        if self.congested.is_none() {
            self.congested = Some((conn, client.clone()));
        }
    }

    pub(super) fn take_congested(&mut self) -> Option<(ConnId, ByteString)> {
        self.congested.take()
    }

    /// Packets waiting for `conn`'s writer.
    pub(super) fn backlog(&self, conn: ConnId) -> usize {
        self.map.get(&conn).map_or(0, |o| o.packets.len())
    }

    pub(super) fn take_closing(&mut self) -> Vec<ConnId> {
        std::mem::take(&mut self.closing)
    }

    pub(super) fn take(&mut self, conn: ConnId) -> Output {
        self.map.remove(&conn).unwrap_or_default()
    }

    pub(super) fn contains(&self, conn: ConnId) -> bool {
        self.map.contains_key(&conn)
    }

    /// Empties the list, keeping its memory for the next round.
    pub(super) fn drain_dirty(&mut self) -> std::vec::Drain<'_, ConnId> {
        self.dirty.drain(..)
    }
}
