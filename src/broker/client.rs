//! What the broker knows about one connection, beside its session.

use std::rc::Rc;
use std::time::Instant;

use bytestring::ByteString;

use crate::auth::Identity;
use crate::connection::handshake::Accepted;
use crate::hash::HashMap;
use crate::message::Message;
use crate::protocol::{Connect, LastWill, Publish, PublishProperties, Version};
use crate::stamp::Timeout;
use crate::topic::TopicName;

/// Identifies a connection on its shard.
pub type ConnId = u64;

/// Per-connection state: owned by the connection task, passed to the broker with
/// each packet.
#[derive(Debug)]
pub struct Client {
    pub conn: ConnId,
    /// Who the authenticator says the client is, for ACL decisions and events.
    /// Shared with the session's entry, which re-checks subscriptions after an
    /// ACL reload even while the client is offline.
    pub identity: Rc<Identity>,
    pub version: Version,
    /// Close the connection after this much silence (1.5 × keepalive).
    pub idle_timeout: Timeout,
    /// The will to publish if the connection ends without a normal DISCONNECT.
    /// Boxed: most clients have none, and an idle connection keeps its Client.
    pub will: Option<Box<LastWill>>,
    /// Topic aliases the client set, for PUBLISHes that name their topic by
    /// alias. Boxed on first use: most clients set none, and an idle
    /// connection keeps its Client (issue 15).
    pub(super) aliases: Option<Box<HashMap<u16, TopicName>>>,
}

impl Client {
    pub(super) fn new(
        conn: ConnId,
        identity: Rc<Identity>,
        connect: &Connect,
        accepted: &Accepted,
    ) -> Client {
        Client {
            conn,
            identity,
            version: connect.version,
            idle_timeout: Timeout::new(accepted.idle_timeout),
            will: connect.will.clone().map(|mut w| {
                // Kept past the CONNECT: copy it out of the read buffer.
                w.topic = w.topic.detached();
                w.payload = bytes::Bytes::copy_from_slice(&w.payload);
                Box::new(w)
            }),
            aliases: None,
        }
    }

    /// The client id, the key its session is kept under. Kept only in the
    /// identity: a second copy cost 32 bytes per connection (issue 15).
    pub fn client_id(&self) -> &ByteString {
        &self.identity.client_id
    }

    /// The message a will becomes when it is published.
    pub(super) fn will_message(&self, will: &LastWill, now: Instant) -> Message {
        let p = &will.properties;
        let publish = Publish {
            dup: false,
            qos: will.qos,
            retain: will.retain,
            topic: will.topic.clone(),
            packet_id: None,
            payload: will.payload.clone(),
            properties: PublishProperties {
                payload_format_indicator: p.payload_format_indicator,
                message_expiry_interval: p.message_expiry_interval,
                content_type: p.content_type.clone(),
                response_topic: p.response_topic.clone(),
                correlation_data: p.correlation_data.clone(),
                user_properties: p.user_properties.clone(),
                ..Default::default()
            },
        };
        Message::from_publish(&publish, self.client_id(), now)
    }
}
