//! Which misbehaviour a lookup gets: forced by a magic call-ID prefix, or drawn from the share
//! knobs, reproducibly from the seed.

use axum::http::StatusCode;

use super::draw::{fnv1a64, mix, unit};
use super::Knobs;

/// What happens to one lookup that passed the limit, the token check and validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fault {
    /// The normal answer.
    None,
    /// This status with `{"error":"injected"}`.
    Status(StatusCode),
    /// 429 with `Retry-After`, as the limiter would answer.
    RateLimited,
    /// 200, then the connection is cut halfway through the body.
    Drop,
    /// The connection is reset before any byte of an answer.
    Reset,
    /// No answer at all.
    Hang,
    /// 200 with this body: not JSON, or not an answer.
    Malformed(&'static str),
    /// The normal answer, after `--slow-ms`.
    Slow,
}

const BAD_GATEWAY_PAGE: &str = "<html>502 Bad Gateway</html>";

/// Faults forced by a call-ID prefix, so a test can put an exact fault on an exact row.
/// `sim401-` refuses every token for that call, as when the app lacks the API: a 401 that
/// a refresh does not cure.
const FORCED: [(&str, Fault); 14] = [
    ("simslow-", Fault::Slow),
    ("sim400-", Fault::Status(StatusCode::BAD_REQUEST)),
    ("sim401-", Fault::Status(StatusCode::UNAUTHORIZED)),
    ("sim403-", Fault::Status(StatusCode::FORBIDDEN)),
    ("sim405-", Fault::Status(StatusCode::METHOD_NOT_ALLOWED)),
    ("sim500-", Fault::Status(StatusCode::INTERNAL_SERVER_ERROR)),
    ("sim503-", Fault::Status(StatusCode::SERVICE_UNAVAILABLE)),
    ("sim429-", Fault::RateLimited),
    ("simdrop-", Fault::Drop),
    ("simreset-", Fault::Reset),
    ("simhang-", Fault::Hang),
    ("simjunk-", Fault::Malformed("<html>oops</html>")),
    ("simempty-", Fault::Malformed("")),
    // A business error inside a 200, as other CEC APIs answer.
    (
        "simbiz-",
        Fault::Malformed(r#"{"returnCode": "1", "description": "tenant does not exist"}"#),
    ),
];

pub(super) fn forced(call_id: &str) -> Option<Fault> {
    FORCED
        .iter()
        .find(|(prefix, _)| call_id.starts_with(prefix))
        .map(|&(_, fault)| fault)
}

/// The fault for the lookup of `call_id` that was preceded by `seen` others of the same ID.
///
/// One draw per request, compared against the cumulative shares (hang, drop, error,
/// malformed), so the shares are disjoint and add up exactly. Keying the draw on `seen`
/// gives a retry a fresh chance while keeping whole runs reproducible for a given seed.
pub(super) fn decide(call_id: &str, seen: u32, knobs: &Knobs) -> Fault {
    if let Some(fault) = forced(call_id) {
        return fault;
    }
    let bits = request_draw(knobs.seed, fnv1a64(call_id.as_bytes()), u64::from(seen));
    let u = unit(bits);
    let error = StatusCode::from_u16(knobs.error_status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    // The low bit is independent of the top bits `unit` used: it picks which junk to send.
    let junk = if bits & 1 == 0 { "" } else { BAD_GATEWAY_PAGE };
    let mut edge = 0.0;
    for (share, fault) in [
        (knobs.hang_share, Fault::Hang),
        (knobs.drop_share, Fault::Drop),
        (knobs.error_share, Fault::Status(error)),
        (knobs.malformed_share, Fault::Malformed(junk)),
    ] {
        edge += share;
        if u < edge {
            return fault;
        }
    }
    Fault::None
}

/// Whether the token request number `index` (0-based) gets an injected 503: drawn from
/// `--token-error-share`, or inside the `--token-fail-from` window.
pub(super) fn token_error(index: u64, knobs: &Knobs) -> bool {
    const TOKEN_SALT: u64 = 0x746f_6b65_6e5f_6572; // "token_er"
    let window = knobs.token_fail_from..knobs.token_fail_from + knobs.token_fail_count;
    window.contains(&index)
        || (knobs.token_error_share > 0.0
            && unit(request_draw(knobs.seed, TOKEN_SALT, index)) < knobs.token_error_share)
}

/// Well-mixed bits from (seed, key, n): nested so that no two inputs collide trivially.
fn request_draw(seed: u64, key: u64, n: u64) -> u64 {
    mix(mix(mix(seed) ^ key) ^ n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_force_faults() {
        let knobs = Knobs::default();
        assert_eq!(decide("sim429-1", 0, &knobs), Fault::RateLimited);
        assert_eq!(decide("simempty-1", 3, &knobs), Fault::Malformed(""));
        assert_eq!(decide("1652317325-339", 0, &knobs), Fault::None);
    }

    #[test]
    fn shares_are_disjoint_and_reproducible() {
        let knobs = Knobs {
            error_share: 0.2,
            hang_share: 0.1,
            malformed_share: 0.1,
            ..Knobs::default()
        };
        let faults: Vec<_> = (0..4000)
            .map(|i| decide(&format!("c{i}"), 0, &knobs))
            .collect();
        let count = |f: fn(&Fault) -> bool| faults.iter().filter(|x| f(x)).count();
        assert!((700..900).contains(&count(|f| matches!(f, Fault::Status(_)))));
        assert!((320..480).contains(&count(|f| *f == Fault::Hang)));
        assert!((320..480).contains(&count(|f| matches!(f, Fault::Malformed(_)))));
        assert_eq!(count(|f| *f == Fault::Drop), 0);
        let again: Vec<_> = (0..4000)
            .map(|i| decide(&format!("c{i}"), 0, &knobs))
            .collect();
        assert_eq!(faults, again);
        // A retry draws again: some first-time errors succeed the second time.
        let retried = (0..4000).filter(|i| decide(&format!("c{i}"), 1, &knobs) != faults[*i]);
        assert!(retried.count() > 500);
    }
}
