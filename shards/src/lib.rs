//! The thread-per-core runtime layer of shardmq: executors pinned to cores,
//! SO_REUSEPORT listeners, the cross-shard mesh and `shard_for(key)`.
//!
//! It knows nothing about MQTT. The runtime itself arrives with the broker issue;
//! today the crate holds only the key-to-shard mapping the topic index relies on.

mod placement;

pub use placement::shard_for;
