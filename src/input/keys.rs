//! Finding the four key columns in an input's schema, and reading each row's key.

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Schema};

use super::InputError;
use crate::key::{CallKey, RowKey};
use crate::text::Text;

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
    /// The flags that name the column, and give the value for every row.
    column_flag: &'static str,
    default_flag: &'static str,
}

const CALL_ID: Field = Field {
    wanted: "call ID",
    aliases: &["callId", "call_id", "callid"],
    flag: "name it with --call-id-column",
    column_flag: "--call-id-column",
    default_flag: "-",
};
const USER_ID: Field = Field {
    wanted: "user ID",
    aliases: &["userId", "user_id", "userid"],
    flag: "name it with --user-id-column, or give every row one with --user-id or env CEC_USER_ID",
    column_flag: "--user-id-column",
    default_flag: "--user-id (CEC_USER_ID)",
};
const TENANT_ID: Field = Field {
    wanted: "tenant ID",
    aliases: &["tenantId", "tenant_id", "tenantid"],
    flag: "name it with --tenant-id-column, or give every row one with --tenant-id or env CEC_TENANT_ID",
    column_flag: "--tenant-id-column",
    default_flag: "--tenant-id (CEC_TENANT_ID)",
};
const AGENT_ID: Field = Field {
    wanted: "agent ID",
    aliases: &["agentId", "agent_id", "agentid"],
    flag:
        "name it with --agent-id-column, or give every row one with --agent-id or env CEC_AGENT_ID",
    column_flag: "--agent-id-column",
    default_flag: "--agent-id (CEC_AGENT_ID)",
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
    /// Every missing column is named at once, with the flags that supply it.
    pub fn find(schema: &Schema, spec: &KeySpec, file: &str) -> Result<KeyColumns, InputError> {
        let mut missing = Vec::new();
        let mut find = |spec: &FieldSpec, field: &Field, required: bool| match locate(
            schema, spec, field, file, required,
        ) {
            Ok(column) => Ok(column),
            Err(Located::Missing(what)) => {
                missing.push(what);
                Ok(Column {
                    index: None,
                    default: None,
                })
            }
            Err(Located::Error(e)) => Err(e),
        };
        let columns = KeyColumns {
            call_id: find(&spec.call_id, &CALL_ID, true)?,
            user_id: find(&spec.user_id, &USER_ID, false)?,
            tenant_id: find(&spec.tenant_id, &TENANT_ID, false)?,
            agent_id: find(&spec.agent_id, &AGENT_ID, false)?,
        };
        if missing.is_empty() {
            return Ok(columns);
        }
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        Err(InputError::MissingColumns {
            file: file.to_owned(),
            missing: missing.join("; "),
            found: if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            },
            hint: delimiter_hint(&names),
        })
    }

    /// The key of every row of `batch`.
    /// The columns the keys come from: they stay text whatever `--infer-types` finds.
    pub fn indices(&self) -> Vec<usize> {
        [
            &self.call_id,
            &self.user_id,
            &self.tenant_id,
            &self.agent_id,
        ]
        .iter()
        .filter_map(|c| c.index)
        .collect()
    }

    pub fn extract(&self, batch: &RecordBatch) -> Vec<RowKey> {
        let read = |c: &Column| {
            c.index.map(|i| {
                Text::new(batch.column(i).as_ref())
                    .expect("key column types are checked when the input is opened")
            })
        };
        let cols = [
            (&self.call_id, read(&self.call_id), "callId"),
            (&self.user_id, read(&self.user_id), "userId"),
            (&self.tenant_id, read(&self.tenant_id), "tenantId"),
            (&self.agent_id, read(&self.agent_id), "agentId"),
        ];
        let mut out = Vec::with_capacity(batch.num_rows());
        let mut cell = String::new();
        for row in 0..batch.num_rows() {
            let mut values: [Box<str>; 4] = Default::default();
            let mut missing = None;
            for (slot, (column, cells, name)) in values.iter_mut().zip(&cols) {
                let text = match cells {
                    Some(cells) => cells.get(row, &mut cell),
                    None => "",
                };
                let mut value = text.trim();
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
                None => RowKey::Valid(CallKey::new(call_id, user_id, tenant_id, agent_id)),
            });
        }
        out
    }
}

enum Located {
    /// What is missing and how to supply it, for the one message naming them all.
    Missing(String),
    Error(InputError),
}

fn locate(
    schema: &Schema,
    spec: &FieldSpec,
    field: &Field,
    file: &str,
    required: bool,
) -> Result<Column, Located> {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let missing = |looked_for: String| {
        Located::Missing(format!(
            "no {} column (looked for {looked_for}): {}",
            field.wanted, field.flag
        ))
    };
    let index = match &spec.column {
        Some(name) => Some(
            names
                .iter()
                .position(|n| n == name)
                .or_else(|| names.iter().position(|n| n.eq_ignore_ascii_case(name)))
                .ok_or_else(|| missing(format!("`{name}`")))?,
        ),
        None => field
            .aliases
            .iter()
            .find_map(|alias| names.iter().position(|n| bare(n) == bare(alias))),
    };
    if index.is_none() && (required || spec.default.is_none()) {
        return Err(missing(field.aliases.join(", ")));
    }
    // `CEC Agent ID`, `agent_id_2`: a column the aliases miss, which the default would
    // silently replace on every row.
    let alias = bare(field.aliases[0]);
    let lookalike = names.iter().find(|n| bare(n).contains(&alias));
    if let (None, Some(_), Some(column)) = (index, &spec.default, lookalike) {
        return Err(Located::Error(InputError::DefaultBesideColumn {
            file: file.to_owned(),
            column: (*column).to_owned(),
            wanted: field.wanted,
            default: field.default_flag,
            column_flag: field.column_flag,
        }));
    }
    if let Some(i) = index {
        check_type(schema.field(i).data_type(), names[i], field, file).map_err(Located::Error)?;
    }
    Ok(Column {
        index,
        default: spec.default.clone().filter(|d| !d.trim().is_empty()),
    })
}

/// A header as the aliases are matched: `Call ID`, `call_id`, `CALL-ID` and `callId` are
/// all `callid`, as exports spell the same column.
fn bare(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, ' ' | '_' | '-' | '.'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Where each ID of an input's rows comes from, for the run's first lines, and whether a
/// default stands in for a column (which is then said at info level, never silently).
pub fn key_sources(schema: &Schema, spec: &KeySpec) -> (String, bool) {
    let mut defaulted = false;
    let mut from = |spec: &FieldSpec, field: &Field| {
        let found = locate(schema, spec, field, "", false).ok();
        match found.and_then(|c| c.index) {
            Some(i) => format!("{} from column `{}`", field.wanted, schema.field(i).name()),
            None => {
                defaulted = true;
                format!("{} from {} for every row", field.wanted, field.default_flag)
            }
        }
    };
    let text = [
        from(&spec.call_id, &CALL_ID),
        from(&spec.user_id, &USER_ID),
        from(&spec.tenant_id, &TENANT_ID),
        from(&spec.agent_id, &AGENT_ID),
    ]
    .join(", ");
    (text, defaulted)
}

/// The name of `schema`'s call-ID column as `spec` finds it, if it has one.
pub fn call_id_column<'a>(schema: &'a Schema, spec: &FieldSpec) -> Option<&'a str> {
    let column = locate(schema, spec, &CALL_ID, "", true).ok()?;
    Some(schema.field(column.index?).name())
}

/// A header read as one column that holds a `;`, a tab or a `|` was split on the wrong
/// separator: say which one it looks like.
fn delimiter_hint(names: &[&str]) -> String {
    let [only] = names else {
        return String::new();
    };
    for (c, shown, arg) in [(';', ";", "';'"), ('\t', "tab", "tab"), ('|', "|", "'|'")] {
        if only.contains(c) {
            return format!("; the file looks {shown}-separated: pass --delimiter {arg}");
        }
    }
    String::new()
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
