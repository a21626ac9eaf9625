//! The columns callinfo adds to every row, in contract order.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Builder, StringBuilder};
use arrow::datatypes::{DataType, Field};

use crate::outcome::{Fields, Outcome};

pub const NAMES: [&str; 8] = [
    "caller",
    "called",
    "media_ability",
    "call_data",
    "call_skill_id",
    "call_skill",
    "call_type",
    "lookup_status",
];

/// Phone numbers are text (digits exactly as sent); the API's integer codes are int64.
pub fn fields() -> Vec<Field> {
    let types = [
        DataType::Utf8,
        DataType::Utf8,
        DataType::Int64,
        DataType::Utf8,
        DataType::Int64,
        DataType::Utf8,
        DataType::Int64,
        DataType::Utf8,
    ];
    NAMES
        .iter()
        .zip(types)
        .map(|(name, dt)| Field::new(*name, dt, true))
        .collect()
}

/// One Arrow array per added column, for a batch of outcomes.
pub fn arrays(outcomes: &[Arc<Outcome>]) -> Vec<ArrayRef> {
    let n = outcomes.len();
    let mut caller = StringBuilder::with_capacity(n, n * 12);
    let mut called = StringBuilder::with_capacity(n, n * 12);
    let mut media = Int64Builder::with_capacity(n);
    let mut data = StringBuilder::with_capacity(n, n * 16);
    let mut skill_id = Int64Builder::with_capacity(n);
    let mut skill = StringBuilder::with_capacity(n, n * 8);
    let mut call_type = Int64Builder::with_capacity(n);
    let mut status = StringBuilder::with_capacity(n, n * 4);
    let none = Fields::default();
    for outcome in outcomes {
        let f = outcome.fields().unwrap_or(&none);
        caller.append_option(f.caller.as_deref());
        called.append_option(f.called.as_deref());
        media.append_option(f.media_ability);
        data.append_option(f.call_data.as_deref());
        skill_id.append_option(f.call_skill_id);
        skill.append_option(f.call_skill.as_deref());
        call_type.append_option(f.call_type);
        status.append_value(outcome.status());
    }
    vec![
        Arc::new(caller.finish()),
        Arc::new(called.finish()),
        Arc::new(media.finish()),
        Arc::new(data.finish()),
        Arc::new(skill_id.finish()),
        Arc::new(skill.finish()),
        Arc::new(call_type.finish()),
        Arc::new(status.finish()),
    ]
}
