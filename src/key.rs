//! The lookup key of a row: the four strings `queryCallInfoByCallId` needs.

/// One call to look up. Rows with the same key get the same outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallKey {
    pub call_id: Box<str>,
    pub user_id: Box<str>,
    pub tenant_id: Box<str>,
    pub agent_id: Box<str>,
    /// The four strings' digest: how the engine and the stores know the key.
    pub id: KeyId,
}

impl CallKey {
    pub fn new(
        call_id: Box<str>,
        user_id: Box<str>,
        tenant_id: Box<str>,
        agent_id: Box<str>,
    ) -> CallKey {
        let id = KeyId::of([&*call_id, &*user_id, &*tenant_id, &*agent_id]);
        CallKey {
            call_id,
            user_id,
            tenant_id,
            agent_id,
            id,
        }
    }
}

/// A key's identity: the first 128 bits of the SHA-256 of its four strings (each with its
/// length in front, so that no two keys run together). Distinct keys never share one in
/// practice (2^-128 a pair), so the engine's maps hold these 16 bytes, not the strings (no
/// key is cloned on its way through), and a store row needs only the call ID beside 64 of
/// the bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub u128);

impl KeyId {
    pub fn of(parts: [&str; 4]) -> KeyId {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for part in parts {
            ctx.update(&(part.len() as u64).to_le_bytes());
            ctx.update(part.as_bytes());
        }
        let digest = ctx.finish();
        let mut first = [0u8; 16];
        first.copy_from_slice(&digest.as_ref()[..16]);
        KeyId(u128::from_be_bytes(first))
    }

    /// 64 of the bits, as an SQLite integer: with the call ID, a store row's key.
    pub fn low64(self) -> i64 {
        self.0 as u64 as i64
    }
}

/// The first `bytes` bytes of the SHA-256 of `text`, in hex: a name or tag made of a text
/// that must not show (an app key) or that is too long for one.
pub fn sha256_hex(text: &str, bytes: usize) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref()[..bytes]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A map keyed by calls' digests.
pub type IdMap<V> = std::collections::HashMap<KeyId, V>;

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
