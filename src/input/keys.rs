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
    /// How a row's empty cell is named.
    name: &'static str,
    aliases: &'static [&'static str],
    flag: &'static str,
    /// The flags that name the column, and give the value for every row.
    column_flag: &'static str,
    default_flag: &'static str,
}

/// The key's fields, in the order of [`KeySpec::fields`] and of [`CallKey::new`].
const FIELDS: [Field; 4] = [
    Field {
        wanted: "call ID",
        name: "callId",
        aliases: &["callId", "call_id", "callid"],
        flag: "name it with --call-id-column",
        column_flag: "--call-id-column",
        default_flag: "-",
    },
    Field {
        wanted: "user ID",
        name: "userId",
        aliases: &["userId", "user_id", "userid"],
        flag: "name it with --user-id-column, or give every row one with --user-id or env CEC_USER_ID",
        column_flag: "--user-id-column",
        default_flag: "--user-id (CEC_USER_ID)",
    },
    Field {
        wanted: "tenant ID",
        name: "tenantId",
        aliases: &["tenantId", "tenant_id", "tenantid"],
        flag: "name it with --tenant-id-column, or give every row one with --tenant-id or env CEC_TENANT_ID",
        column_flag: "--tenant-id-column",
        default_flag: "--tenant-id (CEC_TENANT_ID)",
    },
    Field {
        wanted: "agent ID",
        name: "agentId",
        aliases: &["agentId", "agent_id", "agentid"],
        flag: "name it with --agent-id-column, or give every row one with --agent-id or env CEC_AGENT_ID",
        column_flag: "--agent-id-column",
        default_flag: "--agent-id (CEC_AGENT_ID)",
    },
];

impl KeySpec {
    fn fields(&self) -> [&FieldSpec; 4] {
        [
            &self.call_id,
            &self.user_id,
            &self.tenant_id,
            &self.agent_id,
        ]
    }
}

/// Where each key field comes from in this input, in the order of [`FIELDS`].
#[derive(Clone, Debug)]
pub struct KeyColumns([Column; 4]);

#[derive(Clone, Debug, Default)]
struct Column {
    index: Option<usize>,
    default: Option<String>,
}

impl KeyColumns {
    /// Every missing column is named at once, with the flags that supply it.
    pub fn find(schema: &Schema, spec: &KeySpec, file: &str) -> Result<KeyColumns, InputError> {
        let mut missing = Vec::new();
        let mut columns: [Column; 4] = Default::default();
        for (i, spec) in spec.fields().into_iter().enumerate() {
            match locate(schema, spec, &FIELDS[i], file, i == 0) {
                Ok(column) => columns[i] = column,
                Err(Located::Missing(what)) => missing.push(what),
                Err(Located::Error(e)) => return Err(e),
            }
        }
        if missing.is_empty() {
            return Ok(KeyColumns(columns));
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

    /// The columns the keys come from: they stay text whatever `--infer-types` finds.
    pub fn indices(&self) -> Vec<usize> {
        self.0.iter().filter_map(|c| c.index).collect()
    }

    /// The key of every row of `batch`.
    pub fn extract(&self, batch: &RecordBatch) -> Vec<RowKey> {
        let cells: Vec<Option<Text>> = (self.0.iter())
            .map(|c| {
                c.index.map(|i| {
                    Text::new(batch.column(i).as_ref())
                        .expect("key column types are checked when the input is opened")
                })
            })
            .collect();
        let mut out = Vec::with_capacity(batch.num_rows());
        let mut cell = String::new();
        for row in 0..batch.num_rows() {
            let mut values: [Box<str>; 4] = Default::default();
            let mut missing = None;
            for (i, slot) in values.iter_mut().enumerate() {
                let text = match &cells[i] {
                    Some(cells) => cells.get(row, &mut cell),
                    None => "",
                };
                let mut value = text.trim();
                if value.is_empty() {
                    value = self.0[i].default.as_deref().unwrap_or("");
                }
                if value.is_empty() && missing.is_none() {
                    missing = Some(FIELDS[i].name);
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
    let text: Vec<String> = (spec.fields().into_iter().zip(&FIELDS))
        .map(|(spec, field)| {
            match locate(schema, spec, field, "", false)
                .ok()
                .and_then(|c| c.index)
            {
                Some(i) => format!("{} from column `{}`", field.wanted, schema.field(i).name()),
                None => {
                    defaulted = true;
                    format!("{} from {} for every row", field.wanted, field.default_flag)
                }
            }
        })
        .collect();
    (text.join(", "), defaulted)
}

/// The name of `schema`'s call-ID column as `spec` finds it, if it has one.
pub fn call_id_column<'a>(schema: &'a Schema, spec: &FieldSpec) -> Option<&'a str> {
    let column = locate(schema, spec, &FIELDS[0], "", true).ok()?;
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
