//! One client connection: its accept on the shard's epoll set (`accept`,
//! `readiness`), the CONNECT handshake and the per-packet protocol
//! rules (`handshake`), the socket tasks that drive the shard's broker
//! (`serve`) over the socket they share (`socket`), and the wake-up between
//! them (`notify`).

mod accept;
mod aliases;
pub mod handshake;
mod notify;
pub mod readiness;
mod serve;
mod socket;

pub use accept::accept_loop;
pub use notify::{Notify, WakeQueue};
pub use serve::{serve, Shard, ShardMsg};
pub use socket::{read_scratch, ReadScratch, Socket};
