//! Finding the four key columns in an input's schema, and reading each row's key.

use arrow::datatypes::{DataType, Schema};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};

use super::InputError;
use crate::key::{CallKey, RowKey};

/// What the user said about the key columns: an explicit name, or the aliases; and the
/// value to use where a row has no such column or an empty cell.
#[derive(Clone, Debug, Default)]
pub struct KeySpec {
    pub call_id: FieldSpec,
    pub user_id: FieldSpec,
    pub tenant_id: FieldSpec,
    pub agent_id: FieldSpec,
}

#[derive(Clone, Debug, Default)]
pub struct FieldSpec {
    pub column: Option<String>,
    pub default: Option<String>,
}

struct Field {
    wanted: &'static str,
    aliases: &'static [&'static str],
    flag: &'static str,
}

const CALL_ID: Field = Field {
    wanted: "call ID",
    aliases: &["callId", "call_id", "callid"],
    flag: "--call-id-column",
};
const USER_ID: Field = Field {
    wanted: "user ID",
    aliases: &["userId", "user_id", "userid"],
    flag: "--user-id-column, or give every row one with --user-id",
};
const TENANT_ID: Field = Field {
    wanted: "tenant ID",
    aliases: &["tenantId", "tenant_id", "tenantid"],
    flag: "--tenant-id-column, or give every row one with --tenant-id",
};
const AGENT_ID: Field = Field {
    wanted: "agent ID",
    aliases: &["agentId", "agent_id", "agentid"],
    flag: "--agent-id-column, or give every row one with --agent-id",
};

/// Where each key field comes from in this input.
#[derive(Clone, Debug)]
pub struct KeyColumns {
    call_id: Column,
    user_id: Column,
    tenant_id: Column,
    agent_id: Column,
}

#[derive(Clone, Debug)]
struct Column {
    index: Option<usize>,
    default: Option<String>,
}

impl KeyColumns {
    pub fn find(schema: &Schema, spec: &KeySpec, file: &str) -> Result<KeyColumns, InputError> {
        Ok(KeyColumns {
            call_id: locate(schema, &spec.call_id, &CALL_ID, file, true)?,
            user_id: locate(schema, &spec.user_id, &USER_ID, file, false)?,
            tenant_id: locate(schema, &spec.tenant_id, &TENANT_ID, file, false)?,
            agent_id: locate(schema, &spec.agent_id, &AGENT_ID, file, false)?,
        })
    }

    /// The key of every row of `batch`.
    pub fn extract(&self, batch: &RecordBatch) -> Vec<RowKey> {
        let options = FormatOptions::default().with_null("");
        let fmt = |c: &Column| {
            c.index.map(|i| {
                ArrayFormatter::try_new(batch.column(i).as_ref(), &options)
                    .expect("key column types are checked when the input is opened")
            })
        };
        let cols = [
            (&self.call_id, fmt(&self.call_id), "callId"),
            (&self.user_id, fmt(&self.user_id), "userId"),
            (&self.tenant_id, fmt(&self.tenant_id), "tenantId"),
            (&self.agent_id, fmt(&self.agent_id), "agentId"),
        ];
        let mut out = Vec::with_capacity(batch.num_rows());
        let mut cell = String::new();
        for row in 0..batch.num_rows() {
            let mut values: [Box<str>; 4] = Default::default();
            let mut missing = None;
            for (slot, (column, formatter, name)) in values.iter_mut().zip(&cols) {
                cell.clear();
                if let Some(f) = formatter {
                    use std::fmt::Write;
                    let _ = write!(cell, "{}", f.value(row));
                }
                let mut value = cell.trim();
                if value.is_empty() {
                    value = column.default.as_deref().unwrap_or("");
                }
                if value.is_empty() && missing.is_none() {
                    missing = Some(*name);
                }
                *slot = value.into();
            }
            let [call_id, user_id, tenant_id, agent_id] = values;
            out.push(match missing {
                Some(name) => RowKey::Invalid {
                    call_id,
                    reason: format!("empty {name}"),
                },
                None => RowKey::Valid(CallKey {
                    call_id,
                    user_id,
                    tenant_id,
                    agent_id,
                }),
            });
        }
        out
    }
}

fn locate(
    schema: &Schema,
    spec: &FieldSpec,
    field: &Field,
    file: &str,
    required: bool,
) -> Result<Column, InputError> {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let index = match &spec.column {
        Some(name) => Some(
            names
                .iter()
                .position(|n| n == name)
                .or_else(|| names.iter().position(|n| n.eq_ignore_ascii_case(name)))
                .ok_or_else(|| missing(field, &names, file, format!("`{name}`")))?,
        ),
        None => field
            .aliases
            .iter()
            .find_map(|alias| names.iter().position(|n| n.eq_ignore_ascii_case(alias))),
    };
    if index.is_none() && (required || spec.default.is_none()) {
        let aliases = field.aliases.join(", ");
        return Err(missing(field, &names, file, aliases));
    }
    if let Some(i) = index {
        check_type(schema.field(i).data_type(), names[i], field, file)?;
    }
    Ok(Column {
        index,
        default: spec.default.clone().filter(|d| !d.trim().is_empty()),
    })
}

fn missing(field: &Field, names: &[&str], file: &str, aliases: String) -> InputError {
    InputError::MissingColumn {
        file: file.to_owned(),
        wanted: field.wanted,
        aliases,
        found: if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        },
        flag: field.flag,
    }
}

/// IDs must come through exactly: text and integers do, floats do not.
fn check_type(dt: &DataType, column: &str, field: &Field, file: &str) -> Result<(), InputError> {
    let ok = match dt {
        DataType::Dictionary(_, value) => return check_type(value, column, field, file),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Decimal32(_, 0)
        | DataType::Decimal64(_, 0)
        | DataType::Decimal128(_, 0)
        | DataType::Decimal256(_, 0) => true,
        dt => dt.is_integer(),
    };
    if ok {
        Ok(())
    } else {
        Err(InputError::KeyColumnType {
            file: file.to_owned(),
            column: column.to_owned(),
            data_type: dt.to_string(),
            wanted: field.wanted,
        })
    }
}
