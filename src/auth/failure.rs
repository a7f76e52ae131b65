//! Why a CONNECT was refused: one enum for metrics, events and the CONNACK.

use crate::protocol::ReasonCode;

/// Why an [`Authenticator`](super::Authenticator) refused a client. The
/// `Display` text is for logs; [`Failure::name`] is the stable name that
/// metrics and `on_register_failed` carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Failure {
    #[error("no credentials, and anonymous clients are not allowed")]
    MissingCredentials,
    #[error("the password does not match the password file")]
    BadPassword,
    #[error("credentials given, but no configured method checks them")]
    NoMethod,
    #[error("the token is not a well-formed JWT")]
    MalformedToken,
    #[error("the token's algorithm is not allowed")]
    AlgorithmNotAllowed,
    #[error("no key matches the token's kid")]
    UnknownKey,
    #[error("the token's signature does not verify")]
    InvalidSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf or iat in the future)")]
    NotYetValid,
    #[error("the token's issuer is not the required one")]
    WrongIssuer,
    #[error("the token's audience does not include the required one")]
    WrongAudience,
    #[error("the token lacks the binding claim")]
    MissingRid,
    #[error("the token's binding claim does not match the client")]
    UsernameRidMismatch,
}

impl Failure {
    pub const ALL: [Failure; 13] = [
        Failure::MissingCredentials,
        Failure::BadPassword,
        Failure::NoMethod,
        Failure::MalformedToken,
        Failure::AlgorithmNotAllowed,
        Failure::UnknownKey,
        Failure::InvalidSignature,
        Failure::Expired,
        Failure::NotYetValid,
        Failure::WrongIssuer,
        Failure::WrongAudience,
        Failure::MissingRid,
        Failure::UsernameRidMismatch,
    ];

    /// The stable snake_case name: the fork's names (`invalid_signature`,
    /// `missing_rid`, `username_rid_mismatch`) where it has one.
    pub fn name(self) -> &'static str {
        match self {
            Failure::MissingCredentials => "missing_credentials",
            Failure::BadPassword => "bad_password",
            Failure::NoMethod => "no_matching_method",
            Failure::MalformedToken => "malformed_token",
            Failure::AlgorithmNotAllowed => "algorithm_not_allowed",
            Failure::UnknownKey => "unknown_key",
            Failure::InvalidSignature => "invalid_signature",
            Failure::Expired => "expired",
            Failure::NotYetValid => "not_yet_valid",
            Failure::WrongIssuer => "wrong_issuer",
            Failure::WrongAudience => "wrong_audience",
            Failure::MissingRid => "missing_rid",
            Failure::UsernameRidMismatch => "username_rid_mismatch",
        }
    }

    /// The CONNACK reason: missing credentials are "bad user name or
    /// password" (MQTT 3 code 4, MQTT 5 0x86), every other refusal "not
    /// authorized" (5, 0x87), as the fork answers.
    pub fn reason_code(self) -> ReasonCode {
        match self {
            Failure::MissingCredentials => ReasonCode::BadUserNameOrPassword,
            _ => ReasonCode::NotAuthorized,
        }
    }

    /// The `eventssidecar.v1.RegistrationFailureReason` value (DESIGN section 4).
    pub fn registration_reason(self) -> i32 {
        match self {
            Failure::MissingCredentials | Failure::BadPassword => 2, // INVALID_CREDENTIALS
            Failure::NoMethod => 1,                                  // NO_MATCHING_HOOK_FOUND
            Failure::Expired | Failure::NotYetValid => 4,            // STALE_REQUEST
            Failure::InvalidSignature => 5,                          // INVALID_SIGNATURE
            Failure::UsernameRidMismatch => 6,                       // USERNAME_RID_MISMATCH
            Failure::MalformedToken
            | Failure::AlgorithmNotAllowed
            | Failure::UnknownKey
            | Failure::WrongIssuer
            | Failure::WrongAudience
            | Failure::MissingRid => 3, // NOT_AUTHORIZED
        }
    }
}
