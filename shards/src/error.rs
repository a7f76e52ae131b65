//! Errors of the runtime layer, one enum per moment they can happen:
//! start-up ([`StartError`], shown to the operator), a shard ending badly
//! ([`JoinError`]), and cross-shard sends ([`MeshError`], handled by the
//! sending task).

use std::fmt;
use std::io;

use crate::cpus::CpuList;

/// Why a pool could not start. Every variant says what to change.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The CPU list was empty.
    #[error("no cores configured: list at least one CPU id (online CPUs: {online})")]
    NoCores {
        /// The CPUs that could have been used.
        online: CpuList,
    },
    /// A configured CPU does not exist or is offline.
    #[error(
        "cpu {cpu} is not online on this machine (online CPUs: {online}); \
         use only those ids in the cores setting, or \"all\""
    )]
    CpuNotOnline {
        /// The offending CPU id.
        cpu: usize,
        /// The CPUs that are online.
        online: CpuList,
    },
    /// A CPU appears twice in the list.
    #[error("cpu {cpu} is listed twice in the cores setting; each shard needs a core of its own")]
    DuplicateCpu {
        /// The repeated CPU id.
        cpu: usize,
    },
    /// The machine's CPU topology could not be read from sysfs.
    #[error("could not read the CPU topology of this machine: {0}")]
    Topology(String),
    /// A listener address did not parse or resolve.
    #[error("listener address {addr:?} is not a valid socket address: {reason}")]
    BadAddress {
        /// The address as given.
        addr: String,
        /// What was wrong with it.
        reason: String,
    },
    /// A listener could not be bound.
    #[error("could not listen on {addr}: {source} (is another process using the port?)")]
    Bind {
        /// The address being bound.
        addr: std::net::SocketAddr,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The OS refused a shard thread.
    #[error("could not spawn the thread for shard {shard}: {source}")]
    Thread {
        /// The shard index.
        shard: usize,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// glommio could not create a shard's executor (io_uring setup, locked
    /// memory, CPU pinning).
    #[error(
        "could not start the executor for shard {shard} on cpu {cpu}: {reason} \
         (io_uring must be enabled and the memlock limit must allow io-memory)"
    )]
    Executor {
        /// The shard index.
        shard: usize,
        /// The CPU it was to be pinned to.
        cpu: usize,
        /// glommio's error, as text (glommio errors are not `Send`).
        reason: String,
    },
    /// SIGINT/SIGTERM handlers could not be installed.
    #[error("could not install SIGINT/SIGTERM handlers: {0}")]
    Signals(#[source] io::Error),
}

/// How a shard ended badly. `E` is the error type of the shard future.
#[derive(Debug, thiserror::Error)]
pub enum JoinError<E: fmt::Debug + fmt::Display> {
    /// The shard's thread panicked (in its root future or any task on it).
    #[error("shard {shard} (cpu {cpu}) panicked: {message}")]
    Panicked {
        /// The shard index.
        shard: usize,
        /// Its CPU.
        cpu: usize,
        /// The panic payload, if it was a string.
        message: String,
    },
    /// The shard's future returned an error.
    #[error("shard {shard} (cpu {cpu}) failed: {error}")]
    Failed {
        /// The shard index.
        shard: usize,
        /// Its CPU.
        cpu: usize,
        /// The error the shard returned.
        error: E,
    },
    /// The shard never ran its future: the mesh could not be joined.
    #[error("shard {shard} (cpu {cpu}) could not start: {reason}")]
    NotStarted {
        /// The shard index.
        shard: usize,
        /// Its CPU.
        cpu: usize,
        /// Why.
        reason: String,
    },
}

/// A cross-shard send that could not be done.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum MeshError {
    /// The destination is this shard: deliver locally instead, it is cheaper
    /// than a round trip through a channel.
    #[error("shard {shard} tried to send to itself; deliver locally instead")]
    ToSelf {
        /// This shard.
        shard: usize,
    },
    /// The destination index is out of range.
    #[error("no shard {shard}: the pool has {nr_shards} shards")]
    NoSuchShard {
        /// The requested destination.
        shard: usize,
        /// The pool size.
        nr_shards: usize,
    },
    /// The destination shard has exited (normally during shutdown); its
    /// messages were dropped.
    #[error("shard {shard} has exited; {dropped} messages to it were dropped")]
    PeerGone {
        /// The destination.
        shard: usize,
        /// How many messages were lost.
        dropped: usize,
    },
}
