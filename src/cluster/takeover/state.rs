//! The takeover's types: what a node holds per client id ([`State`]), what
//! it must do ([`Effect`]), and the deliberate breaks the simulation proves
//! it catches.

use std::time::Instant;

use bytes::Bytes;

use crate::cluster::frame::{Message, Queued};
use crate::store::Owner;

/// What the node must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Run CLAIM for the client's waiting CONNECT; answer with
    /// [`super::Ownership::handle_claim`].
    Claim {
        client_id: String,
    },
    Send {
        to: Owner,
        message: Message,
    },
    /// Close the client's connection here, if any, with this DISCONNECT
    /// reason (0x8E, session taken over).
    Disconnect {
        client_id: String,
        reason: u8,
    },
    /// Take the session out of the broker (after [`Effect::Disconnect`]) and
    /// give it to [`super::Ownership::surrendered`].
    Surrender {
        client_id: String,
    },
    /// This node's claim at `generation` has all there was: record it in
    /// the store (a fenced WRITE `settled`), so that a later claim knows its
    /// predecessor's takeover finished.
    Settle {
        client_id: String,
        generation: u64,
    },
    /// The waiting CONNECT is accepted: the session is this node's, at
    /// `generation`, with everything a hand-over brought.
    Accept {
        client_id: String,
        generation: u64,
    },
    /// The waiting CONNECT is refused with this CONNACK reason.
    Refuse {
        client_id: String,
        reason: u8,
    },
    /// Part of a handed-over session: merge it into the local session.
    Restore {
        client_id: String,
        subscriptions: Bytes,
        messages: Vec<Queued>,
    },
}

/// Where a publish for a client id goes on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Into the local session: this node owns it, or is about to.
    Local,
    /// Not here: [`super::Ownership::deliver`] forwarded it to the new owner.
    Forwarded,
    /// This node knows nothing of the id.
    Unknown,
}

/// What a claim of this node waits for: every node it asked that has not
/// said done yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wait {
    /// This node's claim.
    pub generation: u64,
    /// Asked, not done, not dead.
    pub pending: Vec<Owner>,
    /// Every node ever asked for this claim: each is asked once.
    pub asked: Vec<Owner>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// A CONNECT waits for its claim. `forward_to`: the session was handed
    /// over before, and what arrives still goes there until the claim is in.
    /// `takeover`: a newer claim's takeover that arrived first.
    Claiming {
        forward_to: Option<(Owner, u64)>,
        takeover: Option<(Owner, u64)>,
    },
    /// Claimed; the session comes from the nodes the claim waits on.
    Receiving {
        wait: Wait,
        since: Instant,
        /// A CONNECT waits for the end of the hand-over.
        connect: bool,
    },
    Owned {
        generation: u64,
    },
    /// Taken over by `to` at `generation`: what arrives goes there.
    HandedOver {
        to: Owner,
        generation: u64,
        /// This node's own claim, if it was still receiving: pass on what
        /// arrives for it, and say done to `to` when it is complete.
        wait: Option<Wait>,
        /// When to forget the id, once `wait` is complete.
        until: Instant,
        /// The newest claim that asked since: where what arrives goes if
        /// `to` dies.
        newer: Option<(Owner, u64)>,
    },
}

impl State {
    /// The generation this node holds or passes on to, for the checks.
    pub fn generation(&self) -> Option<u64> {
        match self {
            State::Claiming { .. } => None,
            State::Receiving { wait, .. } => Some(wait.generation),
            State::Owned { generation } | State::HandedOver { generation, .. } => Some(*generation),
        }
    }
}

/// Deliberate breaks, for the simulation to prove it catches them (TESTING.md,
/// "Deliberate breaks (issue 14, simulation)"). All off in the real server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Breaks {
    /// The old owner keeps its client connected after a takeover.
    pub keep_client: bool,
    /// What reaches the old owner after it handed over is taken locally and
    /// dropped with the session (EMQX's bug before PR 6393).
    pub no_forwarding: bool,
    /// A takeover is obeyed whatever its generation.
    pub accept_stale: bool,
    /// A claim whose predecessor is alive is treated as if it were dead.
    pub skip_takeover: bool,
}
