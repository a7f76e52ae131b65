//! Outgoing QoS 1 and 2 messages sent to the client and not yet acknowledged.

use std::collections::VecDeque;
use std::time::Instant;

use super::Delivery;
use crate::protocol::PacketId;

/// Where an outgoing QoS 1/2 message is in its acknowledgement flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutState {
    /// QoS 1: PUBLISH sent, waiting for PUBACK.
    AwaitingPubAck,
    /// QoS 2: PUBLISH sent, waiting for PUBREC.
    AwaitingPubRec,
    /// QoS 2: PUBREL sent, waiting for PUBCOMP. The message itself is done with.
    AwaitingPubComp,
}

#[derive(Debug)]
pub struct InflightEntry {
    pub packet_id: PacketId,
    /// When the PUBLISH (or PUBREL) was last sent, for `retry-interval`.
    pub sent_at: Instant,
    pub state: OutState,
    pub delivery: Delivery,
}

/// The inflight window, in the order the messages were first sent, which is the
/// order they must be resent in after a reconnect [MQTT-4.6.0-1].
///
/// Acknowledgements nearly always arrive in order, so lookups start at the front;
/// the window is at most `max-inflight` (65535) long.
#[derive(Debug, Default)]
pub struct Inflight {
    entries: VecDeque<InflightEntry>,
}

impl Inflight {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, packet_id: PacketId) -> bool {
        self.position(packet_id).is_some()
    }

    fn position(&self, packet_id: PacketId) -> Option<usize> {
        self.entries.iter().position(|e| e.packet_id == packet_id)
    }

    pub fn push(&mut self, entry: InflightEntry) {
        self.entries.push_back(entry);
    }

    /// The state of `packet_id`, if it is inflight.
    pub fn state(&self, packet_id: PacketId) -> Option<OutState> {
        self.position(packet_id).map(|at| self.entries[at].state)
    }

    pub fn set_state(&mut self, packet_id: PacketId, state: OutState) {
        if let Some(at) = self.position(packet_id) {
            self.entries[at].state = state;
        }
    }

    pub fn remove(&mut self, packet_id: PacketId) -> Option<InflightEntry> {
        self.position(packet_id)
            .and_then(|at| self.entries.remove(at))
    }

    pub fn iter(&self) -> impl Iterator<Item = &InflightEntry> {
        self.entries.iter()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut InflightEntry> {
        self.entries.iter_mut()
    }

    /// Removes every entry `keep` rejects, giving them back.
    pub fn drain_unless(
        &mut self,
        mut keep: impl FnMut(&InflightEntry) -> bool,
    ) -> Vec<InflightEntry> {
        let mut kept = VecDeque::with_capacity(self.entries.len());
        let mut dropped = Vec::new();
        for e in self.entries.drain(..) {
            if keep(&e) {
                kept.push_back(e);
            } else {
                dropped.push(e);
            }
        }
        self.entries = kept;
        dropped
    }
}
