//! Deciding what to answer a CONNECT: accept (with what the server assigns or
//! caps) or refuse (with which return or reason code).

use std::time::Duration;

use bytestring::ByteString;

use crate::protocol::{ConnAck, ConnAckProperties, Connect, QoS, ReasonCode, Version};

/// The broker's rules for accepting a CONNECT, from `[mqtt]` in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectPolicy {
    pub allowed_versions: Vec<Version>,
    pub max_client_id_len: usize,
    /// The longest keepalive an MQTT 5 client is allowed; a longer or zero one is
    /// replaced through the server keep alive property. `None`: no cap.
    pub max_keepalive: Option<u16>,
    /// Largest packet the broker accepts, announced to MQTT 5 clients.
    pub max_packet_size: u32,
    /// Announced to MQTT 5 clients as the receive maximum.
    pub receive_maximum: u16,
}

/// A CONNECT the broker accepts, with what it decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The client id to use: the client's, or one the server assigned.
    pub client_id: ByteString,
    /// Whether the server made up `client_id` (MQTT 5 must be told).
    pub assigned: bool,
    /// Seconds of silence after which the connection is closed: 1.5 × keepalive
    /// [MQTT-3.1.2-24]. `None` when keepalive is off.
    pub idle_timeout: Option<Duration>,
    /// The keepalive the server imposes on an MQTT 5 client, if it differs.
    pub server_keep_alive: Option<u16>,
    /// How long the session outlives the connection; `Duration::MAX` for an
    /// MQTT 3 persistent session.
    pub session_expiry: Duration,
}

/// Checks `connect` against `policy`. `next_id` makes a client id when the
/// client sent none and may have one assigned.
pub fn accept(
    connect: &Connect,
    policy: &ConnectPolicy,
    next_id: impl FnOnce() -> ByteString,
) -> Result<Accepted, ReasonCode> {
    let version = connect.version;
    if !policy.allowed_versions.contains(&version) {
        return Err(ReasonCode::UnsupportedProtocolVersion);
    }
    let (client_id, assigned) = if connect.client_id.is_empty() {
        // 3.1 requires an id; 3.1.1 assigns one only for a clean session
        // [MQTT-3.1.3-8]; 5 always may [MQTT-3.1.3-6].
        match version {
            Version::V3_1 => return Err(ReasonCode::ClientIdentifierNotValid),
            Version::V3_1_1 if !connect.clean_start => {
                return Err(ReasonCode::ClientIdentifierNotValid)
            }
            _ => (next_id(), true),
        }
    } else {
        (connect.client_id.clone(), false)
    };
    if client_id.len() > policy.max_client_id_len {
        return Err(ReasonCode::ClientIdentifierNotValid);
    }
    let mut keep_alive = connect.keep_alive;
    let mut server_keep_alive = None;
    if let (Version::V5, Some(max)) = (version, policy.max_keepalive) {
        if keep_alive == 0 || keep_alive > max {
            keep_alive = max;
            server_keep_alive = Some(max);
        }
    }
    let idle_timeout =
        (keep_alive > 0).then(|| Duration::from_millis(u64::from(keep_alive) * 1500));
    let session_expiry = match version {
        Version::V5 => {
            match connect.properties.session_expiry_interval.unwrap_or(0) {
                // 0xFFFFFFFF means the session does not expire [MQTT-3.1.2.11.2].
                u32::MAX => Duration::MAX,
                secs => Duration::from_secs(u64::from(secs)),
            }
        }
        _ if connect.clean_start => Duration::ZERO,
        _ => Duration::MAX,
    };
    Ok(Accepted {
        client_id,
        assigned,
        idle_timeout,
        server_keep_alive,
        session_expiry,
    })
}

/// The CONNACK for an accepted CONNECT.
pub fn connack(accepted: &Accepted, session_present: bool, policy: &ConnectPolicy) -> ConnAck {
    ConnAck {
        session_present,
        reason_code: ReasonCode::Success,
        properties: ConnAckProperties {
            receive_maximum: Some(policy.receive_maximum),
            maximum_packet_size: Some(policy.max_packet_size),
            assigned_client_identifier: accepted.assigned.then(|| accepted.client_id.clone()),
            server_keep_alive: accepted.server_keep_alive,
            // Everything else is available and QoS 2 is supported, which the
            // absence of those properties already says.
            maximum_qos: None::<QoS>,
            ..Default::default()
        },
    }
}

/// The CONNACK refusing a CONNECT with `reason` (mapped to a 3.x return code
/// when encoded for MQTT 3).
pub fn refusal(reason: ReasonCode) -> ConnAck {
    ConnAck {
        session_present: false,
        reason_code: reason,
        properties: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ConnectProperties;

    fn policy() -> ConnectPolicy {
        ConnectPolicy {
            allowed_versions: vec![Version::V3_1, Version::V3_1_1, Version::V5],
            max_client_id_len: 8,
            max_keepalive: Some(600),
            max_packet_size: 1 << 20,
            receive_maximum: 100,
        }
    }

    fn connect(version: Version, id: &str, clean: bool, keep_alive: u16) -> Connect {
        Connect {
            version,
            clean_start: clean,
            keep_alive,
            client_id: ByteString::from(id),
            will: None,
            username: None,
            password: None,
            properties: ConnectProperties::default(),
        }
    }

    fn gen() -> ByteString {
        ByteString::from("auto-1")
    }

    #[test]
    fn client_id_rules_per_version() {
        use ReasonCode::ClientIdentifierNotValid as Bad;
        let p = policy();
        assert_eq!(
            accept(&connect(Version::V3_1, "", true, 0), &p, gen),
            Err(Bad)
        );
        assert_eq!(
            accept(&connect(Version::V3_1_1, "", false, 0), &p, gen),
            Err(Bad)
        );
        let a = accept(&connect(Version::V3_1_1, "", true, 0), &p, gen).unwrap();
        assert_eq!((a.client_id.as_ref(), a.assigned), ("auto-1", true));
        let a = accept(&connect(Version::V5, "", false, 0), &p, gen).unwrap();
        assert!(a.assigned);
        assert_eq!(
            connack(&a, false, &p).properties.assigned_client_identifier,
            Some(gen())
        );
        assert_eq!(
            accept(&connect(Version::V5, "123456789", true, 0), &p, gen),
            Err(Bad)
        );
        assert!(accept(&connect(Version::V5, "12345678", true, 0), &p, gen).is_ok());
    }

    #[test]
    fn versions_can_be_turned_off() {
        let p = ConnectPolicy {
            allowed_versions: vec![Version::V5],
            ..policy()
        };
        assert_eq!(
            accept(&connect(Version::V3_1_1, "c", true, 0), &p, gen),
            Err(ReasonCode::UnsupportedProtocolVersion)
        );
    }

    #[test]
    fn keepalive_is_one_and_a_half_times_and_capped_for_v5() {
        let p = policy();
        let a = accept(&connect(Version::V3_1_1, "c", true, 10), &p, gen).unwrap();
        assert_eq!(a.idle_timeout, Some(Duration::from_secs(15)));
        assert_eq!(a.server_keep_alive, None);
        let a = accept(&connect(Version::V3_1_1, "c", true, 0), &p, gen).unwrap();
        assert_eq!(a.idle_timeout, None);
        let a = accept(&connect(Version::V5, "c", true, 1000), &p, gen).unwrap();
        assert_eq!(
            (a.server_keep_alive, a.idle_timeout),
            (Some(600), Some(Duration::from_secs(900)))
        );
        let a = accept(&connect(Version::V5, "c", true, 0), &p, gen).unwrap();
        assert_eq!(a.server_keep_alive, Some(600));
    }

    #[test]
    fn session_expiry() {
        let p = policy();
        let expiry = |c: Connect| accept(&c, &p, gen).unwrap().session_expiry;
        assert_eq!(
            expiry(connect(Version::V3_1_1, "c", true, 0)),
            Duration::ZERO
        );
        assert_eq!(
            expiry(connect(Version::V3_1_1, "c", false, 0)),
            Duration::MAX
        );
        assert_eq!(expiry(connect(Version::V5, "c", false, 0)), Duration::ZERO);
        let mut c = connect(Version::V5, "c", false, 0);
        c.properties.session_expiry_interval = Some(30);
        assert_eq!(expiry(c.clone()), Duration::from_secs(30));
        c.properties.session_expiry_interval = Some(u32::MAX);
        assert_eq!(expiry(c), Duration::MAX);
    }
}
