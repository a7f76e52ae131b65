//! One client connection: the CONNECT handshake and the per-packet protocol
//! rules, kept apart from the socket so they can be tested without one.

pub mod handshake;
