//! What a lookup produced for a row: the enrichment fields, or why there are none.
//! Made by the API client, carried by the engine, written by the output layer.

use std::fmt;

/// The error kinds of the contract (design.md section 1), in report order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LookupKind {
    InvalidInput,
    NotFound,
    BadRequest,
    Unauthorized,
    RateLimited,
    ServerError,
    Timeout,
    Network,
    InvalidResponse,
    /// A 200 whose body carries the platform's failure code (`returnCode`, `resultCode`,
    /// `retcode`): the platform's own words, never "no such call".
    ApiError,
}

impl LookupKind {
    pub const ALL: [LookupKind; 10] = [
        LookupKind::InvalidInput,
        LookupKind::NotFound,
        LookupKind::BadRequest,
        LookupKind::Unauthorized,
        LookupKind::RateLimited,
        LookupKind::ServerError,
        LookupKind::Timeout,
        LookupKind::Network,
        LookupKind::InvalidResponse,
        LookupKind::ApiError,
    ];

    /// The spelling users see in `lookup_status` and the error report's `kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            LookupKind::InvalidInput => "invalid_input",
            LookupKind::NotFound => "not_found",
            LookupKind::BadRequest => "bad_request",
            LookupKind::Unauthorized => "unauthorized",
            LookupKind::RateLimited => "rate_limited",
            LookupKind::ServerError => "server_error",
            LookupKind::Timeout => "timeout",
            LookupKind::Network => "network",
            LookupKind::InvalidResponse => "invalid_response",
            LookupKind::ApiError => "api_error",
        }
    }

    pub fn parse(s: &str) -> Option<LookupKind> {
        LookupKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Failures that another try later may cure; a rerun retries exactly these.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            LookupKind::RateLimited
                | LookupKind::ServerError
                | LookupKind::Timeout
                | LookupKind::Network
        )
    }

    /// Failures a rerun of the job looks up again instead of reusing from the journal: the
    /// transient ones, 401s, since the account's state may have been fixed meanwhile, and
    /// the platform's own failures (a tenant not set up yet), for the same reason.
    pub fn retry_on_rerun(self) -> bool {
        self.is_transient() || matches!(self, LookupKind::Unauthorized | LookupKind::ApiError)
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for LookupKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The enrichment columns of one call. `None` where the API left the field out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fields {
    pub caller: Option<String>,
    pub called: Option<String>,
    pub media_ability: Option<i64>,
    pub call_data: Option<String>,
    pub call_skill_id: Option<i64>,
    pub call_skill: Option<String>,
    pub call_type: Option<i64>,
}

/// Why a row has no enrichment: one line of the error report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub kind: LookupKind,
    pub http_status: Option<u16>,
    /// HTTP requests made for this row (0 when it never needed one).
    pub attempts: u32,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok(Fields),
    Failed(Failure),
}

impl Outcome {
    pub fn invalid_input(message: impl Into<String>) -> Outcome {
        Outcome::Failed(Failure {
            kind: LookupKind::InvalidInput,
            http_status: None,
            attempts: 0,
            message: message.into(),
        })
    }

    pub fn status(&self) -> &'static str {
        match self {
            Outcome::Ok(_) => "ok",
            Outcome::Failed(f) => f.kind.as_str(),
        }
    }

    pub fn fields(&self) -> Option<&Fields> {
        match self {
            Outcome::Ok(f) => Some(f),
            Outcome::Failed(_) => None,
        }
    }

    pub fn failure(&self) -> Option<&Failure> {
        match self {
            Outcome::Ok(_) => None,
            Outcome::Failed(f) => Some(f),
        }
    }
}
