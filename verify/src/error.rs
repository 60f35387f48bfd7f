/// Why a token was refused. Each kind is precise so services can log it;
/// all of them mean the same to the client: `401 invalid_token`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token type is not at+jwt")]
    WrongType,
    #[error("the token algorithm is not accepted")]
    /// The `alg` the token named (attacker-chosen: log it, do not echo it).
    UnsupportedAlgorithm(String),
    #[error("the token algorithm does not match its key")]
    AlgorithmMismatch,
    #[error("the token was signed by an unknown key")]
    UnknownKey,
    #[error("the token signature is invalid")]
    BadSignature,
    #[error("the token was issued by another issuer")]
    WrongIssuer,
    #[error("the token is not meant for this service")]
    WrongAudience,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token lacks the {0} claim")]
    MissingClaim(&'static str),
    #[error("the token has been revoked")]
    Revoked,
}

/// Why discovery failed.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("cannot fetch {url}: {message}")]
    Fetch { url: String, message: String },
    #[error("the discovery document of {0} is invalid")]
    InvalidDocument(String),
    #[error("the discovery document names issuer {found}, expected {expected}")]
    IssuerMismatch { expected: String, found: String },
    #[error("the JWKS is invalid: {0}")]
    InvalidJwks(String),
}
