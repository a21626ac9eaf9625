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

impl Fields {
    /// The stores' compact form: a byte saying which fields are present, then each present
    /// one in order: numbers as zigzag varints, text as a varint header (length, and
    /// whether it is all digits) then its bytes, digits packed two to a byte. Phone numbers
    /// come back exactly as sent, leading zeros and all.
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.encode_with(out, &mut |_| None)
    }

    /// Likewise, with `intern` offering a number for `call_data` and `call_skill` (text that
    /// repeats from call to call): that number is written instead of the text.
    pub fn encode_with(&self, out: &mut Vec<u8>, intern: &mut dyn FnMut(&str) -> Option<u64>) {
        let texts = [
            &self.caller,
            &self.called,
            &self.call_data,
            &self.call_skill,
        ];
        let numbers = [self.media_ability, self.call_skill_id, self.call_type];
        let mut present = 0u8;
        for (i, t) in texts.iter().enumerate() {
            present |= u8::from(t.is_some()) << i;
        }
        for (i, n) in numbers.iter().enumerate() {
            present |= u8::from(n.is_some()) << (4 + i);
        }
        out.push(present);
        let text = |out: &mut Vec<u8>, t: &Option<String>| {
            if let Some(t) = t {
                encode_text(out, t);
            }
        };
        let mut shared = |out: &mut Vec<u8>, t: &Option<String>| {
            if let Some(t) = t {
                match intern(t) {
                    Some(id) => varint(out, id << 2 | TEXT_REF),
                    None => encode_text(out, t),
                }
            }
        };
        let number = |out: &mut Vec<u8>, n: Option<i64>| {
            if let Some(n) = n {
                varint(out, ((n << 1) ^ (n >> 63)) as u64);
            }
        };
        text(out, &self.caller);
        text(out, &self.called);
        number(out, self.media_ability);
        shared(out, &self.call_data);
        number(out, self.call_skill_id);
        shared(out, &self.call_skill);
        number(out, self.call_type);
    }

    /// `None` for bytes that [`Fields::encode`] did not write.
    pub fn decode(bytes: &[u8]) -> Option<Fields> {
        Self::decode_with(bytes, &mut |_| None)
    }

    /// Likewise, with `resolve` giving back the text of a number `intern` gave.
    pub fn decode_with(
        mut bytes: &[u8],
        resolve: &mut dyn FnMut(u64) -> Option<String>,
    ) -> Option<Fields> {
        let present = *bytes.first()?;
        bytes = &bytes[1..];
        let has = |bit: u8| present & (1 << bit) != 0;
        let mut text = |bit: u8, bytes: &mut &[u8]| -> Option<Option<String>> {
            if has(bit) {
                decode_text(bytes, &mut *resolve).map(Some)
            } else {
                Some(None)
            }
        };
        let caller = text(0, &mut bytes)?;
        let called = text(1, &mut bytes)?;
        let number = |bit: u8, bytes: &mut &[u8]| -> Option<Option<i64>> {
            if has(bit) {
                let z = read_varint(bytes)?;
                Some(Some(((z >> 1) as i64) ^ -((z & 1) as i64)))
            } else {
                Some(None)
            }
        };
        let media_ability = number(4, &mut bytes)?;
        let call_data = text(2, &mut bytes)?;
        let call_skill_id = number(5, &mut bytes)?;
        let call_skill = text(3, &mut bytes)?;
        let call_type = number(6, &mut bytes)?;
        bytes.is_empty().then_some(Fields {
            caller,
            called,
            media_ability,
            call_data,
            call_skill_id,
            call_skill,
            call_type,
        })
    }
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn read_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes.split_first()?;
        *bytes = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// What a text's header says follows: its bytes, its digits packed, or a number standing
/// for it (the low two bits; the rest is the length, or the number).
const TEXT_BYTES: u64 = 0;
const TEXT_DIGITS: u64 = 1;
const TEXT_REF: u64 = 2;

fn encode_text(out: &mut Vec<u8>, t: &str) {
    let digits = !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let tag = if digits { TEXT_DIGITS } else { TEXT_BYTES };
    varint(out, (t.len() as u64) << 2 | tag);
    if !digits {
        out.extend_from_slice(t.as_bytes());
        return;
    }
    for pair in t.as_bytes().chunks(2) {
        let hi = pair[0] - b'0';
        let lo = pair.get(1).map_or(0, |b| b - b'0');
        out.push(hi << 4 | lo);
    }
}

fn decode_text(
    bytes: &mut &[u8],
    resolve: &mut dyn FnMut(u64) -> Option<String>,
) -> Option<String> {
    let header = read_varint(bytes)?;
    match header & 3 {
        TEXT_REF => return resolve(header >> 2),
        TEXT_BYTES | TEXT_DIGITS => {}
        _ => return None,
    }
    let len = usize::try_from(header >> 2).ok()?;
    if header & 3 == TEXT_BYTES {
        let (text, rest) = (bytes.get(..len)?, bytes.get(len..)?);
        *bytes = rest;
        return String::from_utf8(text.to_vec()).ok();
    }
    let packed = len.div_ceil(2);
    let (pairs, rest) = (bytes.get(..packed)?, bytes.get(packed..)?);
    *bytes = rest;
    let mut t = String::with_capacity(len);
    for &b in pairs {
        for d in [b >> 4, b & 0x0f] {
            if t.len() < len {
                if d > 9 {
                    return None;
                }
                t.push(char::from(b'0' + d));
            }
        }
    }
    Some(t)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn text() -> impl proptest::strategy::Strategy<Value = Option<String>> {
        proptest::option::of(proptest::string::string_regex("(|[0-9]{0,30}|.{0,40})").unwrap())
    }

    proptest::proptest! {
        /// Whatever the fields (digits, leading zeros, empty text, any number), the stores
        /// give back exactly what they were given.
        #[test]
        fn fields_round_trip(
            caller in text(), called in text(), call_data in text(), call_skill in text(),
            media_ability in proptest::option::of(proptest::num::i64::ANY),
            call_skill_id in proptest::option::of(proptest::num::i64::ANY),
            call_type in proptest::option::of(proptest::num::i64::ANY),
        ) {
            let f = Fields { caller, called, media_ability, call_data, call_skill_id, call_skill, call_type };
            let mut blob = Vec::new();
            f.encode(&mut blob);
            proptest::prop_assert_eq!(Fields::decode(&blob), Some(f.clone()));
            // With the shared texts interned, and given back.
            let mut interned: Vec<String> = Vec::new();
            blob.clear();
            f.encode_with(&mut blob, &mut |t| {
                interned.push(t.to_owned());
                Some(interned.len() as u64 - 1)
            });
            let back = Fields::decode_with(&blob, &mut |id| interned.get(id as usize).cloned());
            proptest::prop_assert_eq!(back, Some(f));
        }
    }

    #[test]
    fn digits_are_packed_and_kept_exactly() {
        let f = Fields {
            caller: Some("0012359421049".into()),
            called: Some("7".into()),
            ..Fields::default()
        };
        let mut blob = Vec::new();
        f.encode(&mut blob);
        assert_eq!(blob.len(), 1 + (1 + 7) + (1 + 1));
        assert_eq!(Fields::decode(&blob), Some(f));
        assert_eq!(Fields::decode(&[0xff]), None, "a truncated blob is refused");
    }
}
