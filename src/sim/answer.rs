//! The simulator's answers: a pure function of the call ID (and two per-ID share knobs), public
//! so that tests can compute what every output row must contain without a lookup table.
//!
//! # The function
//!
//! Let `h` = FNV-1a 64 of the call ID's bytes.
//!
//! - Not found (`{}`): IDs starting with `missing-`, and a share `--not-found-share` of the
//!   other non-magic IDs: those with `unit(h ^ NOT_FOUND_SALT) < share`.
//! - `caller`: normally 11 digits, `format!("1{:010}", h % 10_000_000_000)`. Long mode gives
//!   L digits: L = 20 for `long20-…`, 25 for `long25-…`, and `20 + (h >> 7) % 6` for the
//!   non-magic IDs with `unit(h ^ LONG_SALT) < --long-number-share`. The digits come from a
//!   splitmix64 stream seeded with `h`: each step yields `x`, the first digit is `1 + x % 9`,
//!   the others `x % 10`.
//! - `called`: normally `60000 + (h >> 16) % 10000`; in long mode like `caller`, with the
//!   stream seeded with `h ^ 0x5555_5555_5555_5555`.
//! - `mediaAbility` = `1 + (h >> 24) % 2`; `callSkillId` = `1 + (h >> 28) % 8`; `callSkill` =
//!   [`SKILLS`]`[callSkillId - 1]`; `callType` = `(h >> 32) % 4`.
//! - `calldata` = `queue=<callSkillId>,note=café, "vip"`: a comma, a quote and non-ASCII,
//!   so that every run exercises CSV quoting.
//! - `callId` is echoed as sent.
//!
//! The per-ID shares use no seed, so they are a property of the ID that [`expected`] can see.
//!
//! # Worked example
//!
//! ```text
//! call ID        1652317325-339
//! h              0x5e7c_377b_9865_bd3a
//! caller         "1" + format!("{:010}", h % 10^10)      = 10654656826
//! called         60000 + (h >> 16) % 10000 = 60000 + 2469 = 62469
//! mediaAbility   1 + (h >> 24) % 2                        = 1
//! callSkillId    1 + (h >> 28) % 8                        = 2, so callSkill = "video"
//! callType       (h >> 32) % 4                            = 3
//! on the wire    {"caller":10654656826,"called":62469,"mediaAbility":1,
//!                 "calldata":"queue=2,note=café, \"vip\"","callId":"1652317325-339",
//!                 "callSkillId":2,"callSkill":"video","callType":3}
//! ```
//!
//! # Wire form
//!
//! Numbers are written as raw JSON text ([`RawValue`]), so a 25-digit caller reaches the client
//! with every digit; `--string-numbers` and `simstr-…` quote them instead. `simtype-…` sends
//! `"callType": "voice"` and `"mediaAbility": 1.5`, `simecho-…` echoes `other-<callId>`.

use serde_json::value::RawValue;

use super::draw::{fnv1a64, mix, splitmix64, unit};
use super::Knobs;
use crate::api::model::LookupAnswer;

/// Skill names by `callSkillId - 1`.
pub const SKILLS: [&str; 8] = [
    "voice", "video", "chat", "email", "fax", "callback", "wechat", "web",
];

const NOT_FOUND_SALT: u64 = 0x6e6f_745f_666f_756e; // "not_foun"
const LONG_SALT: u64 = 0x6c6f_6e67_5f6e_756d; // "long_num"

/// What the simulator answers for a call ID, as the client should write it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub caller: String,
    pub called: String,
    pub media_ability: i64,
    pub call_data: String,
    pub call_skill_id: i64,
    pub call_skill: String,
    pub call_type: i64,
}

/// The answer for `call_id`, or `None` when the simulator answers `{}` (not found).
/// Fault prefixes (`sim500-…`) are not consulted: they decide whether an answer is sent,
/// not what it holds.
pub fn expected(call_id: &str, knobs: &Knobs) -> Option<Expected> {
    if call_id.starts_with("missing-") {
        return None;
    }
    let h = fnv1a64(call_id.as_bytes());
    let magic = is_magic(call_id);
    if !magic && share_hit(h, NOT_FOUND_SALT, knobs.not_found_share) {
        return None;
    }
    let long = if call_id.starts_with("long20-") {
        Some(20)
    } else if call_id.starts_with("long25-") {
        Some(25)
    } else if !magic && share_hit(h, LONG_SALT, knobs.long_number_share) {
        Some(20 + ((h >> 7) % 6) as usize)
    } else {
        None
    };
    let (caller, called) = match long {
        Some(len) => (digits(h, len), digits(h ^ 0x5555_5555_5555_5555, len)),
        None => (
            format!("1{:010}", h % 10_000_000_000),
            (60_000 + (h >> 16) % 10_000).to_string(),
        ),
    };
    let call_skill_id = 1 + ((h >> 28) % 8) as i64;
    Some(Expected {
        caller,
        called,
        media_ability: 1 + ((h >> 24) % 2) as i64,
        call_data: format!("queue={call_skill_id},note=café, \"vip\""),
        call_skill_id,
        call_skill: SKILLS[(call_skill_id - 1) as usize].to_owned(),
        call_type: ((h >> 32) % 4) as i64,
    })
}

/// The JSON body of a successful lookup for `call_id`, with the content twists its prefix asks
/// for. Goes through [`LookupAnswer`] so the simulator and the client share one wire shape.
pub(super) fn render(call_id: &str, knobs: &Knobs) -> Vec<u8> {
    let Some(e) = expected(call_id, knobs) else {
        return b"{}".to_vec();
    };
    let raw = |text: String| RawValue::from_string(text).expect("the simulator writes valid JSON");
    let quoted = |text: &str| raw(serde_json::to_string(text).expect("a string serializes"));
    let number = |digits: &str| {
        if knobs.string_numbers || call_id.starts_with("simstr-") {
            quoted(digits)
        } else {
            raw(digits.to_owned())
        }
    };
    let wrong_types = call_id.starts_with("simtype-");
    let echo = match call_id.starts_with("simecho-") {
        true => quoted(&format!("other-{call_id}")),
        false => quoted(call_id),
    };
    let (caller, called) = (number(&e.caller), number(&e.called));
    let media_ability = raw(match wrong_types {
        true => "1.5".to_owned(),
        false => e.media_ability.to_string(),
    });
    let call_type = match wrong_types {
        true => quoted("voice"),
        false => raw(e.call_type.to_string()),
    };
    let (call_data, skill) = (quoted(&e.call_data), quoted(&e.call_skill));
    let skill_id = raw(e.call_skill_id.to_string());
    let answer = LookupAnswer {
        caller: Some(&caller),
        called: Some(&called),
        media_ability: Some(&media_ability),
        calldata: Some(&call_data),
        call_id: Some(&echo),
        call_skill_id: Some(&skill_id),
        call_skill: Some(&skill),
        call_type: Some(&call_type),
        ..LookupAnswer::default()
    };
    serde_json::to_vec(&answer).expect("raw values serialize")
}

/// IDs with a magic prefix are exempt from the per-ID shares, so that a test asking for an
/// exact fault or shape on a row gets exactly that.
fn is_magic(call_id: &str) -> bool {
    const CONTENT: [&str; 6] = [
        "missing-", "long20-", "long25-", "simstr-", "simtype-", "simecho-",
    ];
    CONTENT.iter().any(|p| call_id.starts_with(p)) || super::faults::forced(call_id).is_some()
}

/// `len` digits, the first non-zero, from a splitmix64 stream seeded with `seed`.
fn digits(seed: u64, len: usize) -> String {
    let mut state = seed;
    (0..len)
        .map(|i| {
            let x = splitmix64(&mut state);
            let d = if i == 0 { 1 + x % 9 } else { x % 10 };
            char::from(b'0' + d as u8)
        })
        .collect()
}

fn share_hit(h: u64, salt: u64, share: f64) -> bool {
    share > 0.0 && unit(mix(h ^ salt)) < share
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_example() {
        let e = expected("1652317325-339", &Knobs::default()).unwrap();
        assert_eq!(fnv1a64(b"1652317325-339"), 0x5e7c_377b_9865_bd3a);
        assert_eq!(
            e,
            Expected {
                caller: "10654656826".into(),
                called: "62469".into(),
                media_ability: 1,
                call_data: "queue=2,note=café, \"vip\"".into(),
                call_skill_id: 2,
                call_skill: "video".into(),
                call_type: 3,
            }
        );
        let wire = r#"{"caller":10654656826,"called":62469,"mediaAbility":1,"calldata":"queue=2,note=café, \"vip\"","callId":"1652317325-339","callSkillId":2,"callSkill":"video","callType":3}"#;
        assert_eq!(
            String::from_utf8(render("1652317325-339", &Knobs::default())).unwrap(),
            wire
        );
    }

    #[test]
    fn long_prefixes_and_missing() {
        let knobs = Knobs::default();
        for (id, len) in [("long20-a", 20), ("long25-a", 25), ("long25-b", 25)] {
            let e = expected(id, &knobs).unwrap();
            for n in [&e.caller, &e.called] {
                assert_eq!(n.len(), len, "{id}: {n}");
                assert!(n.bytes().all(|b| b.is_ascii_digit()) && !n.starts_with('0'));
            }
        }
        assert_eq!(expected("missing-1", &knobs), None);
        assert_eq!(render("missing-1", &knobs), b"{}");
    }

    #[test]
    fn shares_select_ids() {
        let knobs = Knobs {
            not_found_share: 0.2,
            long_number_share: 0.5,
            ..Knobs::default()
        };
        let ids: Vec<String> = (0..2000).map(|i| format!("id-{i}")).collect();
        let found: Vec<_> = ids.iter().filter_map(|id| expected(id, &knobs)).collect();
        let long = found.iter().filter(|e| e.caller.len() >= 20).count();
        assert!((1500..1700).contains(&found.len()), "{}", found.len());
        assert!((700..900).contains(&long), "{long}");
        // Magic IDs are exempt.
        assert_eq!(expected("long20-x", &knobs).unwrap().caller.len(), 20);
    }

    #[test]
    fn long_numbers_are_exact_on_the_wire() {
        let body = render("long25-z", &Knobs::default());
        let e = expected("long25-z", &Knobs::default()).unwrap();
        let text = String::from_utf8(body).unwrap();
        assert!(text.contains(&format!("\"caller\":{}", e.caller)), "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["callId"], "long25-z");
        assert_eq!(v["calldata"], e.call_data);

        let text = String::from_utf8(render("simstr-1", &Knobs::default())).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(v["caller"].is_string() && v["called"].is_string());

        let text = String::from_utf8(render("simtype-1", &Knobs::default())).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            (&v["callType"], v["mediaAbility"].as_f64()),
            (&"voice".into(), Some(1.5))
        );

        let text = String::from_utf8(render("simecho-1", &Knobs::default())).unwrap();
        assert!(text.contains("\"callId\":\"other-simecho-1\""), "{text}");
    }
}
