//! MQTT 5 properties: identifiers and the reading/writing helpers that each
//! packet's property struct is built from.
//!
//! Each packet has its own properties struct (in the packet's module) holding only
//! what that packet may carry; a property that is not allowed, or appears twice
//! where once is the limit, is an error naming the packet.

use bytes::Bytes;
use bytestring::ByteString;

use super::read::Reader;
use super::write::{put_binary, put_str, put_var_int, Counter, Sink};
use super::{DecodeError, EncodeError};
use crate::topic::TopicName;

pub(crate) const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
pub(crate) const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
pub(crate) const CONTENT_TYPE: u8 = 0x03;
pub(crate) const RESPONSE_TOPIC: u8 = 0x08;
pub(crate) const CORRELATION_DATA: u8 = 0x09;
pub(crate) const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
pub(crate) const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
pub(crate) const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
pub(crate) const SERVER_KEEP_ALIVE: u8 = 0x13;
pub(crate) const AUTHENTICATION_METHOD: u8 = 0x15;
pub(crate) const AUTHENTICATION_DATA: u8 = 0x16;
pub(crate) const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
pub(crate) const WILL_DELAY_INTERVAL: u8 = 0x18;
pub(crate) const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
pub(crate) const RESPONSE_INFORMATION: u8 = 0x1A;
pub(crate) const SERVER_REFERENCE: u8 = 0x1C;
pub(crate) const REASON_STRING: u8 = 0x1F;
pub(crate) const RECEIVE_MAXIMUM: u8 = 0x21;
pub(crate) const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
pub(crate) const TOPIC_ALIAS: u8 = 0x23;
pub(crate) const MAXIMUM_QOS: u8 = 0x24;
pub(crate) const RETAIN_AVAILABLE: u8 = 0x25;
pub(crate) const USER_PROPERTY: u8 = 0x26;
pub(crate) const MAXIMUM_PACKET_SIZE: u8 = 0x27;
pub(crate) const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
pub(crate) const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
pub(crate) const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;

/// The largest subscription identifier (a variable byte integer).
pub const MAX_SUBSCRIPTION_ID: u32 = 268_435_455;

/// User properties: name/value pairs, in order, duplicates allowed [MQTT-3.3.2-18].
pub type UserProperties = Vec<(ByteString, ByteString)>;

/// Reads one property section: its length, then `(identifier, value)` pairs.
///
/// It refuses a second occurrence of any property [MQTT-2.2.2-2] except user
/// properties and those marked [`PropertyReader::repeatable`].
pub(crate) struct PropertyReader {
    r: Reader,
    /// The identifier just read, for error messages.
    id: u8,
    /// Bit `n` is set once property `n` has been read.
    seen: u64,
    /// Bit `n` is set if property `n` may appear more than once.
    repeatable: u64,
}

impl PropertyReader {
    /// Takes the property length and the properties it covers off `r`.
    pub(crate) fn new(r: &mut Reader) -> Result<Self, DecodeError> {
        let len = r.var_int("property length")?;
        let section = r.take(len as usize, "properties")?;
        Ok(PropertyReader {
            r: Reader::new(section, r.packet),
            id: 0,
            seen: 0,
            repeatable: 1 << USER_PROPERTY,
        })
    }

    /// Lets property `id` appear more than once (subscription identifiers in PUBLISH).
    pub(crate) fn repeatable(mut self, id: u8) -> Self {
        self.repeatable |= 1 << id;
        self
    }

    /// The next property identifier, or `None` at the end of the section.
    pub(crate) fn next_id(&mut self) -> Result<Option<u8>, DecodeError> {
        if self.r.is_empty() {
            return Ok(None);
        }
        let packet = self.r.packet;
        let id = self.r.var_int("property identifier")?;
        // Every identifier MQTT 5 defines is below 64; anything else is unknown.
        if id >= 64 {
            return Err(DecodeError::UnknownProperty { packet, id });
        }
        self.id = id as u8;
        let bit = 1u64 << id;
        if self.seen & bit != 0 && self.repeatable & bit == 0 {
            return Err(DecodeError::DuplicateProperty {
                packet,
                id: self.id,
            });
        }
        self.seen |= bit;
        Ok(Some(self.id))
    }

    /// The error for an identifier the packet does not allow (or nobody defines).
    pub(crate) fn unexpected(&self) -> DecodeError {
        let (packet, id) = (self.r.packet, self.id);
        if is_known(id) {
            DecodeError::PropertyNotAllowed { packet, id }
        } else {
            DecodeError::UnknownProperty {
                packet,
                id: u32::from(id),
            }
        }
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        self.r.u8("property value")
    }

    /// A byte property that may only be 0 or 1.
    pub(crate) fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(DecodeError::InvalidPropertyValue {
                id: self.id,
                value: u32::from(v),
            }),
        }
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        self.r.u16("property value")
    }

    /// A two-byte property where 0 is a protocol error (receive maximum, topic alias).
    pub(crate) fn non_zero_u16(&mut self) -> Result<u16, DecodeError> {
        match self.u16()? {
            0 => Err(DecodeError::InvalidPropertyValue {
                id: self.id,
                value: 0,
            }),
            v => Ok(v),
        }
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        self.r.u32("property value")
    }

    /// A four-byte property where 0 is a protocol error (maximum packet size).
    pub(crate) fn non_zero_u32(&mut self) -> Result<u32, DecodeError> {
        match self.u32()? {
            0 => Err(DecodeError::InvalidPropertyValue {
                id: self.id,
                value: 0,
            }),
            v => Ok(v),
        }
    }

    /// A subscription identifier: a variable byte integer, never 0.
    pub(crate) fn subscription_id(&mut self) -> Result<u32, DecodeError> {
        match self.r.var_int("property value")? {
            0 => Err(DecodeError::InvalidPropertyValue {
                id: self.id,
                value: 0,
            }),
            v => Ok(v),
        }
    }

    pub(crate) fn string(&mut self) -> Result<ByteString, DecodeError> {
        self.r.string("property value")
    }

    /// A response topic: a topic name, so no wildcards [MQTT-3.3.2-14].
    pub(crate) fn response_topic(&mut self) -> Result<TopicName, DecodeError> {
        TopicName::new(self.string()?).map_err(DecodeError::InvalidTopicName)
    }

    pub(crate) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        self.r.binary("property value")
    }

    pub(crate) fn user_property(&mut self, into: &mut UserProperties) -> Result<(), DecodeError> {
        let name = self.string()?;
        let value = self.string()?;
        into.push((name, value));
        Ok(())
    }
}

fn is_known(id: u8) -> bool {
    matches!(id, 0x01..=0x03 | 0x08 | 0x09 | 0x0B | 0x11..=0x13 | 0x15..=0x1A | 0x1C | 0x1F | 0x21..=0x2A)
}

/// Writes a property section: its length, then what `emit` writes.
///
/// `emit` runs twice, first over a [`Counter`] to learn the length.
pub(crate) fn put_properties<S: Sink>(
    s: &mut S,
    emit: impl Fn(&mut dyn PropSink) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    let mut counter = Counter::default();
    emit(&mut counter)?;
    put_var_int(s, counter.0)?;
    emit(&mut SinkAdapter(s))
}

/// Object-safe face of [`Sink`] for property writers, so each packet's property
/// writer is one closure rather than a generic function per sink.
pub(crate) trait PropSink {
    fn byte(&mut self, id: u8, v: u8);
    fn two(&mut self, id: u8, v: u16);
    fn four(&mut self, id: u8, v: u32);
    fn var(&mut self, id: u8, v: u32) -> Result<(), EncodeError>;
    fn binary(&mut self, id: u8, v: &[u8]) -> Result<(), EncodeError>;
    fn pair(&mut self, id: u8, k: &str, v: &str) -> Result<(), EncodeError>;
}

struct SinkAdapter<'a, S>(&'a mut S);

impl<S: Sink> PropSink for SinkAdapter<'_, S> {
    fn byte(&mut self, id: u8, v: u8) {
        self.0.put_u8(id);
        self.0.put_u8(v);
    }
    fn two(&mut self, id: u8, v: u16) {
        self.0.put_u8(id);
        self.0.put_u16(v);
    }
    fn four(&mut self, id: u8, v: u32) {
        self.0.put_u8(id);
        self.0.put_u32(v);
    }
    fn var(&mut self, id: u8, v: u32) -> Result<(), EncodeError> {
        self.0.put_u8(id);
        put_var_int(self.0, v as usize)
    }
    fn binary(&mut self, id: u8, v: &[u8]) -> Result<(), EncodeError> {
        self.0.put_u8(id);
        put_binary(self.0, v)
    }
    fn pair(&mut self, id: u8, k: &str, v: &str) -> Result<(), EncodeError> {
        self.0.put_u8(id);
        put_str(self.0, k)?;
        put_str(self.0, v)
    }
}

impl PropSink for Counter {
    fn byte(&mut self, _: u8, _: u8) {
        self.0 += 2;
    }
    fn two(&mut self, _: u8, _: u16) {
        self.0 += 3;
    }
    fn four(&mut self, _: u8, _: u32) {
        self.0 += 5;
    }
    fn var(&mut self, id: u8, v: u32) -> Result<(), EncodeError> {
        SinkAdapter(self).var(id, v)
    }
    fn binary(&mut self, id: u8, v: &[u8]) -> Result<(), EncodeError> {
        SinkAdapter(self).binary(id, v)
    }
    fn pair(&mut self, id: u8, k: &str, v: &str) -> Result<(), EncodeError> {
        SinkAdapter(self).pair(id, k, v)
    }
}

/// Helpers for optional properties, so property writers read as a list.
pub(crate) trait PropSinkExt: PropSink {
    fn opt_byte(&mut self, id: u8, v: Option<u8>) {
        if let Some(v) = v {
            self.byte(id, v)
        }
    }
    fn opt_bool(&mut self, id: u8, v: Option<bool>) {
        self.opt_byte(id, v.map(u8::from))
    }
    fn opt_two(&mut self, id: u8, v: Option<u16>) {
        if let Some(v) = v {
            self.two(id, v)
        }
    }
    fn opt_four(&mut self, id: u8, v: Option<u32>) {
        if let Some(v) = v {
            self.four(id, v)
        }
    }
    fn opt_binary(&mut self, id: u8, v: Option<&[u8]>) -> Result<(), EncodeError> {
        match v {
            Some(v) => self.binary(id, v),
            None => Ok(()),
        }
    }
    fn opt_str(&mut self, id: u8, v: Option<&ByteString>) -> Result<(), EncodeError> {
        self.opt_binary(id, v.map(|s| s.as_bytes().as_ref()))
    }
    fn users(&mut self, v: &UserProperties) -> Result<(), EncodeError> {
        v.iter()
            .try_for_each(|(k, v)| self.pair(USER_PROPERTY, k, v))
    }
}

impl<T: PropSink + ?Sized> PropSinkExt for T {}
