//! The lookup key of a row: the four strings `queryCallInfoByCallId` needs.

/// One call to look up. Rows with the same key get the same outcome.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CallKey {
    pub call_id: Box<str>,
    pub user_id: Box<str>,
    pub tenant_id: Box<str>,
    pub agent_id: Box<str>,
}

/// What the reader found in a row: a key to look up, or why the row cannot be looked up
/// (it becomes an `invalid_input` line in the report without costing a request).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RowKey {
    Valid(CallKey),
    Invalid { call_id: Box<str>, reason: String },
}

impl RowKey {
    pub fn call_id(&self) -> &str {
        match self {
            RowKey::Valid(k) => &k.call_id,
            RowKey::Invalid { call_id, .. } => call_id,
        }
    }
}
