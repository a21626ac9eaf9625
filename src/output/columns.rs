//! The columns callinfo adds to every row: all of them in contract order by default, or the
//! ones `--columns` names, each under `--prefix` + its name.

use std::sync::Arc;

use arrow_array::builder::{Int64Builder, StringBuilder};
use arrow_array::ArrayRef;
use arrow_schema::{DataType, Field};

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

/// One added column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Added {
    Caller,
    Called,
    MediaAbility,
    CallData,
    CallSkillId,
    CallSkill,
    CallType,
    LookupStatus,
}

const ALL: [Added; 8] = [
    Added::Caller,
    Added::Called,
    Added::MediaAbility,
    Added::CallData,
    Added::CallSkillId,
    Added::CallSkill,
    Added::CallType,
    Added::LookupStatus,
];

/// What one row's cell in an added column holds.
pub enum Value<'a> {
    Text(Option<&'a str>),
    Int(Option<i64>),
}

impl Added {
    pub fn name(self) -> &'static str {
        NAMES[self as usize]
    }

    fn parse(name: &str) -> Option<Added> {
        ALL.into_iter().find(|c| c.name() == name)
    }

    /// Phone numbers are text (digits exactly as sent); the API's integer codes are int64.
    fn data_type(self) -> DataType {
        match self {
            Added::MediaAbility | Added::CallSkillId | Added::CallType => DataType::Int64,
            _ => DataType::Utf8,
        }
    }

    pub fn value(self, outcome: &Outcome) -> Value<'_> {
        const NONE: Fields = Fields {
            caller: None,
            called: None,
            media_ability: None,
            call_data: None,
            call_skill_id: None,
            call_skill: None,
            call_type: None,
        };
        let f = outcome.fields().unwrap_or(&NONE);
        match self {
            Added::Caller => Value::Text(f.caller.as_deref()),
            Added::Called => Value::Text(f.called.as_deref()),
            Added::MediaAbility => Value::Int(f.media_ability),
            Added::CallData => Value::Text(f.call_data.as_deref()),
            Added::CallSkillId => Value::Int(f.call_skill_id),
            Added::CallSkill => Value::Text(f.call_skill.as_deref()),
            Added::CallType => Value::Int(f.call_type),
            Added::LookupStatus => Value::Text(Some(outcome.status())),
        }
    }
}

/// The added columns of this run, and the prefix of their names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    pub columns: Vec<Added>,
    pub prefix: String,
}

impl Default for Selection {
    fn default() -> Self {
        Selection {
            columns: ALL.to_vec(),
            prefix: String::new(),
        }
    }
}

impl Selection {
    /// `--columns a,b,c`: names from [`NAMES`], each once, in the order given.
    pub fn parse(names: &[String], prefix: String) -> Result<Selection, String> {
        if names.is_empty() {
            return Ok(Selection {
                prefix,
                ..Selection::default()
            });
        }
        let mut columns = Vec::new();
        for name in names {
            let column = Added::parse(name.trim()).ok_or_else(|| {
                format!(
                    "`{name}` is not an added column; choose from {}",
                    NAMES.join(",")
                )
            })?;
            if columns.contains(&column) {
                return Err(format!("`{name}` is named twice"));
            }
            columns.push(column);
        }
        Ok(Selection { columns, prefix })
    }

    pub fn names(&self) -> impl Iterator<Item = String> + '_ {
        self.columns
            .iter()
            .map(|c| format!("{}{}", self.prefix, c.name()))
    }

    pub fn fields(&self) -> Vec<Field> {
        self.columns
            .iter()
            .zip(self.names())
            .map(|(c, name)| Field::new(name, c.data_type(), true))
            .collect()
    }

    /// One Arrow array per added column, for a batch of outcomes.
    pub fn arrays(&self, outcomes: &[Arc<Outcome>]) -> Vec<ArrayRef> {
        let n = outcomes.len();
        self.columns
            .iter()
            .map(|&c| -> ArrayRef {
                match c.data_type() {
                    DataType::Int64 => {
                        let mut b = Int64Builder::with_capacity(n);
                        for o in outcomes {
                            if let Value::Int(v) = c.value(o) {
                                b.append_option(v);
                            }
                        }
                        Arc::new(b.finish())
                    }
                    _ => {
                        let mut b = StringBuilder::with_capacity(n, n * 12);
                        for o in outcomes {
                            if let Value::Text(v) = c.value(o) {
                                b.append_option(v);
                            }
                        }
                        Arc::new(b.finish())
                    }
                }
            })
            .collect()
    }
}
