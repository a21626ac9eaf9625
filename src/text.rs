//! Arrow values as the text a CSV cell holds: Parquet input written as CSV, and key columns
//! that are integers or dictionaries in a Parquet input. Arrow's own `ArrayFormatter`
//! (arrow-cast, default options, null as "") prints them; text columns, every column of a
//! CSV input, are lent as they are. Types a call export does not hold (intervals, unions,
//! list views, run-end encoding) are refused when the output is opened, before any lookup
//! is paid for: their text forms are Arrow's debugging notation, not data.

use std::fmt::Write;

use arrow_array::cast::AsArray;
use arrow_array::Array;
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::DataType;

const OPTIONS: FormatOptions<'static> = FormatOptions::new().with_null("");

/// Why a column cannot be printed: its type (or a nested one), or its timezone.
#[derive(Debug, thiserror::Error)]
pub enum Unsupported {
    #[error("{0} has no text form here")]
    Type(DataType),
    #[error("{0}")]
    Arrow(String),
}

/// One column of a batch, ready to give each row's text.
pub enum Text<'a> {
    Utf8(&'a arrow_array::StringArray),
    Formatted(ArrayFormatter<'a>),
}

impl<'a> Text<'a> {
    pub fn new(array: &'a dyn Array) -> Result<Text<'a>, Unsupported> {
        if let Some(t) = no_text_form(array.data_type()) {
            return Err(Unsupported::Type(t.clone()));
        }
        Ok(match array.data_type() {
            DataType::Utf8 => Text::Utf8(array.as_string()),
            _ => Text::Formatted(
                ArrayFormatter::try_new(array, &OPTIONS)
                    .map_err(|e| Unsupported::Arrow(e.to_string()))?,
            ),
        })
    }

    /// Row `row`'s text: lent from the array when it is text, else formatted into `buf`.
    pub fn get<'s>(&'s self, row: usize, buf: &'s mut String) -> &'s str {
        match self {
            Text::Utf8(a) if a.is_null(row) => "",
            Text::Utf8(a) => a.value(row),
            Text::Formatted(f) => {
                buf.clear();
                // A formatting error is a value with no text (a timestamp out of range):
                // the cell is left empty rather than the run stopped.
                let _ = write!(buf, "{}", f.value(row));
                buf
            }
        }
    }
}

/// The type, itself or nested, that has no text form here.
fn no_text_form(t: &DataType) -> Option<&DataType> {
    use DataType as D;
    match t {
        D::Interval(_) | D::Union(..) | D::ListView(_) | D::LargeListView(_) => Some(t),
        D::RunEndEncoded(..) => Some(t),
        D::List(f) | D::LargeList(f) | D::FixedSizeList(f, _) | D::Map(f, _) => {
            no_text_form(f.data_type())
        }
        D::Struct(fields) => fields.iter().find_map(|f| no_text_form(f.data_type())),
        D::Dictionary(_, v) => no_text_form(v),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::*;

    use super::*;

    #[test]
    fn text_is_lent_others_are_arrows_and_some_types_are_refused() {
        let mut buf = String::new();
        let s = StringArray::from(vec![Some("a,b"), None]);
        let t = Text::new(&s).unwrap();
        assert_eq!(
            (t.get(0, &mut String::new()), t.get(1, &mut buf)),
            ("a,b", "")
        );
        let f = Float64Array::from(vec![Some(0.25), None, Some(1e20)]);
        let t = Text::new(&f).unwrap();
        let cells: Vec<String> = (0..3).map(|i| t.get(i, &mut buf).to_owned()).collect();
        assert_eq!(cells, ["0.25", "", "1e20"]);
        let ts = TimestampSecondArray::from(vec![1_763_884_800]).with_timezone("+00:00");
        assert_eq!(
            Text::new(&ts).unwrap().get(0, &mut buf),
            "2025-11-23T08:00:00Z"
        );
        let months = IntervalYearMonthArray::from(vec![1]);
        assert!(Text::new(&months).is_err());
        let list = ListArray::new(
            Arc::new(arrow_schema::Field::new(
                "x",
                months.data_type().clone(),
                true,
            )),
            arrow_buffer::OffsetBuffer::from_lengths([1]),
            Arc::new(months),
            None,
        );
        assert!(Text::new(&list).is_err());
    }
}
