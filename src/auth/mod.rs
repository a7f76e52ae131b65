//! The authentication decision point: who a CONNECT is, or why it is refused.
//!
//! The broker asks its [`Authenticator`] once per CONNECT, after the handshake
//! has accepted the packet and before any session changes. The default,
//! [`AllowAnonymous`], accepts everyone; the JWT and password-file
//! authenticators (issue 5) plug in here.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytestring::ByteString;

use crate::protocol::{Connect, ReasonCode};

/// Decides whether a CONNECT may proceed.
pub trait Authenticator {
    /// The identity of the client sending `connect`, whose effective client id
    /// is `client_id` (server-assigned when the CONNECT carried none), or the
    /// reason to refuse it. MQTT 3 clients get the reason as a return code
    /// through [`ReasonCode::to_v3_connack`]: `NotAuthorized` is 5,
    /// `BadUserNameOrPassword` is 4.
    fn authenticate(
        &self,
        connect: &Connect,
        client_id: &ByteString,
    ) -> Result<Identity, ReasonCode>;
}

/// Who a connected client is: what ACL rules and events need to know.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// The CONNECT username, for `user` and `%u` ACL rules.
    pub username: Option<ByteString>,
    /// The effective client id, for `%c` and `token` ACL rules.
    pub client_id: ByteString,
    /// Verified token claims as strings, for `%(j, claim)` ACL rules. `None`
    /// without a token; the JWT authenticator (issue 5) fills it.
    pub claims: Option<Arc<BTreeMap<String, String>>>,
}

impl Identity {
    /// An identity with no token: the username and client id as given.
    pub fn anonymous(connect: &Connect, client_id: &ByteString) -> Identity {
        Identity {
            username: connect.username.clone(),
            client_id: client_id.clone(),
            claims: None,
        }
    }
}

/// Accepts every client, with the username and client id it gave
/// (`allow-anonymous`, today's behaviour).
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAnonymous;

impl Authenticator for AllowAnonymous {
    fn authenticate(
        &self,
        connect: &Connect,
        client_id: &ByteString,
    ) -> Result<Identity, ReasonCode> {
        Ok(Identity::anonymous(connect, client_id))
    }
}
