//! `--infer-types`: CSV columns typed for Parquet. Each column takes the first of int64,
//! float64, date, timestamp and boolean that every non-empty cell of the first batch
//! (4,096 rows) casts to, by Arrow's own casts (arrow-cast), so that inference and
//! conversion follow one set of rules; else it stays text. A later cell that does not fit
//! its column's type is an error naming its row and column, never a silent null.
//!
//! Kept as text whatever they hold: the key columns (IDs with leading zeros or more
//! digits than an int64), and any column with a number written with a leading zero or `+`
//! (phone numbers, codes), which a number type would change.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_cast::cast::{cast_with_options, CastOptions};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::InputError;

/// The types tried, in order.
const CANDIDATES: [DataType; 5] = [
    DataType::Int64,
    DataType::Float64,
    DataType::Date32,
    DataType::Timestamp(TimeUnit::Microsecond, None),
    DataType::Boolean,
];

/// The typed schema, and which columns change type.
pub(super) struct Typing {
    pub(super) schema: SchemaRef,
    targets: Vec<Option<DataType>>,
}

impl Typing {
    /// Types from `sample`; the columns of `text` stay text.
    pub(super) fn infer(sample: &RecordBatch, text: &[usize]) -> Typing {
        let targets: Vec<Option<DataType>> = sample
            .columns()
            .iter()
            .enumerate()
            .map(|(i, column)| {
                if text.contains(&i) {
                    return None;
                }
                let cells = column.as_string::<i32>();
                if cells.iter().flatten().all(str::is_empty) || has_leading_zero(cells) {
                    return None;
                }
                CANDIDATES.into_iter().find(|t| fits(cells, t))
            })
            .collect();
        let fields: Vec<Field> = sample
            .schema()
            .fields()
            .iter()
            .zip(&targets)
            .map(|(f, t)| match t {
                Some(t) => Field::new(f.name(), t.clone(), true),
                None => f.as_ref().clone(),
            })
            .collect();
        Typing {
            schema: Arc::new(Schema::new(fields)),
            targets,
        }
    }

    /// The batch's text columns as their types; rows are numbered from `first_row`.
    pub(super) fn apply(
        &self,
        batch: &RecordBatch,
        file: &str,
        first_row: u64,
    ) -> Result<RecordBatch, InputError> {
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
        for (i, (column, target)) in batch.columns().iter().zip(&self.targets).enumerate() {
            let Some(target) = target else {
                columns.push(column.clone());
                continue;
            };
            let cells = column.as_string::<i32>();
            let typed = cast(cells, target);
            let misfit = (0..cells.len()).find(|&r| typed.is_null(r) && !cells.value(r).is_empty());
            if let Some(row) = misfit {
                return Err(InputError::Row {
                    file: file.to_owned(),
                    row: first_row + row as u64,
                    message: format!(
                        "column `{}` holds `{}`, not {} as its first rows (--infer-types); pass the column as text by leaving out --infer-types, or fix the cell",
                        self.schema.field(i).name(),
                        cells.value(row),
                        describe(target)
                    ),
                });
            }
            columns.push(typed);
        }
        Ok(RecordBatch::try_new(self.schema.clone(), columns)
            .expect("one typed column per field, of the field's type"))
    }
}

/// Every non-empty cell casts to `target`. A date is a date alone: Arrow casts
/// `2026-11-30 10:00:00` to a date too, dropping its time.
fn fits(cells: &StringArray, target: &DataType) -> bool {
    if *target == DataType::Date32 && cells.iter().flatten().any(|v| v.len() > 10) {
        return false;
    }
    let typed = cast(cells, target);
    (0..cells.len()).all(|r| !typed.is_null(r) || cells.value(r).is_empty())
}

/// `cells` cast to `target`; an empty cell, or one that does not cast, is null.
fn cast(cells: &StringArray, target: &DataType) -> ArrayRef {
    let options = CastOptions {
        safe: true,
        ..Default::default()
    };
    cast_with_options(cells, target, &options).expect("Arrow casts text to every candidate type")
}

/// A number written as `007` or `+86...`: a number type would drop what makes it.
fn has_leading_zero(cells: &StringArray) -> bool {
    cells.iter().flatten().any(|v| {
        let b = v.as_bytes();
        b.first() == Some(&b'+') || (b.len() > 1 && b[0] == b'0' && b[1].is_ascii_digit())
    })
}

fn describe(t: &DataType) -> &'static str {
    match t {
        DataType::Int64 => "an integer",
        DataType::Float64 => "a number",
        DataType::Date32 => "a date",
        DataType::Timestamp(..) => "a timestamp",
        _ => "true or false",
    }
}
