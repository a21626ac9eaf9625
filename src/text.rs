//! Arrow values as the text a CSV cell holds: Parquet input written as CSV, and key columns
//! that are integers or dictionaries in a Parquet input.
//!
//! Written by hand, to print exactly what arrow-cast's `ArrayFormatter` (default options, null
//! as "") prints, because that crate and arrow-ord, which it pulls in, were a third of the
//! cold release build (about 100 s of CPU) for this one use. The value conversions are still
//! Arrow's own (arrow-array's temporal conversions, arrow-data's decimals), and a test checks
//! every type here against arrow-cast itself. Types a call export does not hold (intervals,
//! unions, list views, run-end encoding) are refused when the output is opened, before any
//! lookup is paid for.

use std::fmt::Write;

use arrow_array::cast::AsArray;
use arrow_array::temporal_conversions as tc;
use arrow_array::timezone::Tz;
use arrow_array::types::*;
use arrow_array::{Array, ArrowPrimitiveType, GenericListArray, OffsetSizeTrait};
use arrow_buffer::NullBuffer;
use arrow_schema::{DataType, TimeUnit};
use chrono::{SecondsFormat, TimeZone, Utc};

/// Why a column cannot be printed: its type (or a nested one), or its timezone.
#[derive(Debug, thiserror::Error)]
pub enum Unsupported {
    #[error("{0} has no text form here")]
    Type(DataType),
    #[error("unknown timezone `{0}`")]
    Timezone(String),
}

/// One column of a batch, ready to give each row's text.
pub struct Text<'a> {
    nulls: Option<&'a NullBuffer>,
    how: How<'a>,
}

type Format<'a> = Box<dyn Fn(usize, &mut String) + 'a>;

enum How<'a> {
    /// Text columns (every column of a CSV input) are lent, not copied.
    Utf8(&'a arrow_array::StringArray),
    LargeUtf8(&'a arrow_array::LargeStringArray),
    Utf8View(&'a arrow_array::StringViewArray),
    Dictionary {
        keys: Vec<usize>,
        values: Box<Text<'a>>,
    },
    Format(Format<'a>),
}

impl<'a> Text<'a> {
    pub fn new(array: &'a dyn Array) -> Result<Text<'a>, Unsupported> {
        let how = match array.data_type() {
            DataType::Utf8 => How::Utf8(array.as_string()),
            DataType::LargeUtf8 => How::LargeUtf8(array.as_string()),
            DataType::Utf8View => How::Utf8View(array.as_string_view()),
            DataType::Dictionary(_, _) => {
                let dict = array.as_any_dictionary();
                let values = dict.values().as_ref();
                How::Dictionary {
                    // An all-null dictionary may have no values (and then no key is read).
                    keys: if values.is_empty() {
                        Vec::new()
                    } else {
                        dict.normalized_keys()
                    },
                    values: Box::new(Text::new(values)?),
                }
            }
            _ => How::Format(format(array)?),
        };
        Ok(Text {
            nulls: array.nulls(),
            how,
        })
    }

    /// Row `row`'s text: lent from the array when it is text, else formatted into `buf`.
    pub fn get<'s>(&'s self, row: usize, buf: &'s mut String) -> &'s str {
        if self.is_null(row) {
            return "";
        }
        match &self.how {
            How::Utf8(a) => a.value(row),
            How::LargeUtf8(a) => a.value(row),
            How::Utf8View(a) => a.value(row),
            How::Dictionary { keys, values } => values.get(keys[row], buf),
            How::Format(_) => {
                buf.clear();
                self.append(row, buf);
                buf
            }
        }
    }

    /// Appends row `row`'s text (nothing when null): a nested value's part of its parent's.
    fn append(&self, row: usize, out: &mut String) {
        if self.is_null(row) {
            return;
        }
        match &self.how {
            How::Utf8(a) => out.push_str(a.value(row)),
            How::LargeUtf8(a) => out.push_str(a.value(row)),
            How::Utf8View(a) => out.push_str(a.value(row)),
            How::Dictionary { keys, values } => values.append(keys[row], out),
            How::Format(f) => f(row, out),
        }
    }

    fn is_null(&self, row: usize) -> bool {
        self.nulls.is_some_and(|n| n.is_null(row))
    }
}

fn format(array: &dyn Array) -> Result<Format<'_>, Unsupported> {
    use DataType as D;
    Ok(match array.data_type() {
        D::Null => Box::new(|_, _| {}),
        D::Boolean => {
            let a = array.as_boolean();
            Box::new(move |i, out| out.push_str(if a.value(i) { "true" } else { "false" }))
        }
        D::Int8 => int::<Int8Type>(array),
        D::Int16 => int::<Int16Type>(array),
        D::Int32 => int::<Int32Type>(array),
        D::Int64 => int::<Int64Type>(array),
        D::UInt8 => int::<UInt8Type>(array),
        D::UInt16 => int::<UInt16Type>(array),
        D::UInt32 => int::<UInt32Type>(array),
        D::UInt64 => int::<UInt64Type>(array),
        D::Float16 => {
            let a = array.as_primitive::<Float16Type>();
            Box::new(move |i, out| {
                let _ = write!(out, "{}", a.value(i).to_f32());
            })
        }
        D::Float32 => float::<Float32Type>(array),
        D::Float64 => float::<Float64Type>(array),
        D::Decimal32(_, _) => decimal::<Decimal32Type>(array),
        D::Decimal64(_, _) => decimal::<Decimal64Type>(array),
        D::Decimal128(_, _) => decimal::<Decimal128Type>(array),
        D::Decimal256(_, _) => decimal::<Decimal256Type>(array),
        D::Date32 => {
            let a = array.as_primitive::<Date32Type>();
            Box::new(move |i, out| {
                let v = a.value(i);
                debug_or_raw(out, tc::date32_to_datetime(v).map(|d| d.date()), v)
            })
        }
        D::Date64 => {
            let a = array.as_primitive::<Date64Type>();
            Box::new(move |i, out| {
                let v = a.value(i);
                debug_or_raw(out, tc::date64_to_datetime(v), v)
            })
        }
        D::Time32(TimeUnit::Second) => time::<Time32SecondType>(array, tc::time32s_to_time),
        D::Time32(_) => time::<Time32MillisecondType>(array, tc::time32ms_to_time),
        D::Time64(TimeUnit::Microsecond) => {
            time::<Time64MicrosecondType>(array, tc::time64us_to_time)
        }
        D::Time64(_) => time::<Time64NanosecondType>(array, tc::time64ns_to_time),
        D::Timestamp(unit, tz) => {
            let tz: Option<Tz> = match tz {
                Some(tz) => Some(
                    tz.parse()
                        .map_err(|_| Unsupported::Timezone(tz.to_string()))?,
                ),
                None => None,
            };
            match unit {
                TimeUnit::Second => timestamp::<TimestampSecondType>(array, tz),
                TimeUnit::Millisecond => timestamp::<TimestampMillisecondType>(array, tz),
                TimeUnit::Microsecond => timestamp::<TimestampMicrosecondType>(array, tz),
                TimeUnit::Nanosecond => timestamp::<TimestampNanosecondType>(array, tz),
            }
        }
        D::Duration(TimeUnit::Second) => {
            duration::<DurationSecondType>(array, tc::try_duration_s_to_duration)
        }
        D::Duration(TimeUnit::Millisecond) => {
            duration::<DurationMillisecondType>(array, tc::try_duration_ms_to_duration)
        }
        D::Duration(TimeUnit::Microsecond) => {
            duration::<DurationMicrosecondType>(array, |v| Some(tc::duration_us_to_duration(v)))
        }
        D::Duration(TimeUnit::Nanosecond) => {
            duration::<DurationNanosecondType>(array, |v| Some(tc::duration_ns_to_duration(v)))
        }
        D::Binary => hex(array.as_binary::<i32>(), |a, i| a.value(i)),
        D::LargeBinary => hex(array.as_binary::<i64>(), |a, i| a.value(i)),
        D::BinaryView => hex(array.as_binary_view(), |a, i| a.value(i)),
        D::FixedSizeBinary(_) => hex(array.as_fixed_size_binary(), |a, i| a.value(i)),
        D::List(_) => offset_list(array.as_list::<i32>())?,
        D::LargeList(_) => offset_list(array.as_list::<i64>())?,
        D::FixedSizeList(_, n) => {
            let a = array.as_fixed_size_list();
            let values = Text::new(a.values().as_ref())?;
            let n = *n as usize;
            Box::new(move |i, out| list(out, i * n..(i + 1) * n, &values))
        }
        D::Struct(fields) => {
            let a = array.as_struct();
            let children = fields
                .iter()
                .zip(a.columns())
                .map(|(f, c)| Ok((f.name().as_str(), Text::new(c.as_ref())?)))
                .collect::<Result<Vec<_>, Unsupported>>()?;
            Box::new(move |i, out| {
                out.push('{');
                for (n, (name, child)) in children.iter().enumerate() {
                    if n > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(name);
                    out.push_str(": ");
                    child.append(i, out);
                }
                out.push('}');
            })
        }
        D::Map(_, _) => {
            let a = array.as_map();
            let keys = Text::new(a.keys().as_ref())?;
            let values = Text::new(a.values().as_ref())?;
            Box::new(move |i, out| {
                let o = a.value_offsets();
                out.push('{');
                for (n, j) in (o[i] as usize..o[i + 1] as usize).enumerate() {
                    if n > 0 {
                        out.push_str(", ");
                    }
                    keys.append(j, out);
                    out.push_str(": ");
                    values.append(j, out);
                }
                out.push('}');
            })
        }
        other => return Err(Unsupported::Type(other.clone())),
    })
}

fn int<T>(array: &dyn Array) -> Format<'_>
where
    T: ArrowPrimitiveType,
    T::Native: itoa::Integer,
{
    let a = array.as_primitive::<T>();
    Box::new(move |i, out| out.push_str(itoa::Buffer::new().format(a.value(i))))
}

fn float<T>(array: &dyn Array) -> Format<'_>
where
    T: ArrowPrimitiveType,
    T::Native: ryu::Float,
{
    let a = array.as_primitive::<T>();
    Box::new(move |i, out| out.push_str(ryu::Buffer::new().format(a.value(i))))
}

fn decimal<T>(array: &dyn Array) -> Format<'_>
where
    T: DecimalType,
    T::Native: arrow_data::decimal::DecimalNativeType,
{
    let a = array.as_primitive::<T>();
    let scale = a.scale();
    Box::new(move |i, out| {
        let _ = arrow_data::decimal::write_decimal(out, a.value(i), scale);
    })
}

fn time<T>(array: &dyn Array, to: fn(T::Native) -> Option<chrono::NaiveTime>) -> Format<'_>
where
    T: ArrowPrimitiveType,
    T::Native: itoa::Integer,
{
    let a = array.as_primitive::<T>();
    Box::new(move |i, out| debug_or_raw(out, to(a.value(i)), a.value(i)))
}

/// ISO 8601 (`PT90S`), as chrono prints a `TimeDelta`.
fn duration<T>(array: &dyn Array, to: fn(i64) -> Option<chrono::TimeDelta>) -> Format<'_>
where
    T: ArrowPrimitiveType<Native = i64>,
{
    let a = array.as_primitive::<T>();
    Box::new(move |i, out| match to(a.value(i)) {
        Some(d) => {
            let _ = write!(out, "{d}");
        }
        None => out.push_str("<invalid>"),
    })
}

/// A zoned timestamp prints as RFC 3339 in its zone (`Z` for UTC), a naive one as chrono's
/// `Debug` (`2026-11-23T08:00:00`), both with as many fraction digits as it has.
fn timestamp<T: ArrowTimestampType>(array: &dyn Array, tz: Option<Tz>) -> Format<'_> {
    let a = array.as_primitive::<T>();
    Box::new(move |i, out| {
        let v = a.value(i);
        match (tc::as_datetime::<T>(v), tz) {
            (Some(naive), Some(tz)) => {
                let zoned = Utc.from_utc_datetime(&naive).with_timezone(&tz);
                out.push_str(&zoned.to_rfc3339_opts(SecondsFormat::AutoSi, true));
            }
            (naive, _) => debug_or_raw(out, naive, v),
        }
    })
}

/// A date or time, or (past chrono's range, where Arrow prints an error) the stored integer,
/// so that no value is lost.
fn debug_or_raw(out: &mut String, value: Option<impl std::fmt::Debug>, raw: impl itoa::Integer) {
    match value {
        Some(v) => {
            let _ = write!(out, "{v:?}");
        }
        None => out.push_str(itoa::Buffer::new().format(raw)),
    }
}

fn hex<'a, A: 'a>(a: &'a A, value: fn(&'a A, usize) -> &'a [u8]) -> Format<'a> {
    Box::new(move |i, out| {
        for byte in value(a, i) {
            let _ = write!(out, "{byte:02x}");
        }
    })
}

fn offset_list<O: OffsetSizeTrait>(a: &GenericListArray<O>) -> Result<Format<'_>, Unsupported> {
    let values = Text::new(a.values().as_ref())?;
    Ok(Box::new(move |i, out| {
        let o = a.value_offsets();
        list(out, o[i].as_usize()..o[i + 1].as_usize(), &values)
    }))
}

fn list(out: &mut String, rows: std::ops::Range<usize>, values: &Text) {
    out.push('[');
    for (n, row) in rows.enumerate() {
        if n > 0 {
            out.push_str(", ");
        }
        values.append(row, out);
    }
    out.push(']');
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::builder::*;
    use arrow_array::*;
    use arrow_cast::display::{ArrayFormatter, FormatOptions};
    use arrow_schema::{Field, Fields};
    use proptest::prelude::*;

    use super::*;

    /// Every row as this module prints it and as arrow-cast does.
    fn both(array: &dyn Array) -> (Vec<String>, Vec<String>) {
        let ours = Text::new(array).unwrap();
        let options = FormatOptions::default().with_null("");
        let arrow = ArrayFormatter::try_new(array, &options).unwrap();
        let mut buf = String::new();
        (0..array.len())
            .map(|i| (ours.get(i, &mut buf).to_owned(), arrow.value(i).to_string()))
            .unzip()
    }

    fn same(array: ArrayRef) {
        let (ours, arrow) = both(array.as_ref());
        assert_eq!(ours, arrow, "{}", array.data_type());
    }

    const INTS: [i64; 7] = [0, 1, -1, 42, i64::MIN, i64::MAX, 1_652_317_325_339];
    /// Seconds from 1901 to 2096, with fractions of every length.
    const TIMES: [i64; 6] = [
        0,
        -2_208_988_800,
        1_763_884_800,
        1_763_884_801,
        4_000_000_000,
        -1,
    ];

    #[test]
    fn prints_what_arrow_prints_for_every_type_a_column_holds() {
        let ints = || INTS.iter().map(|v| Some(*v)).chain([None]);
        same(Arc::new(Int64Array::from_iter(ints())));
        same(Arc::new(Int32Array::from_iter(
            ints().map(|v| v.map(|v| v as i32)),
        )));
        same(Arc::new(Int16Array::from_iter(
            ints().map(|v| v.map(|v| v as i16)),
        )));
        same(Arc::new(Int8Array::from_iter(
            ints().map(|v| v.map(|v| v as i8)),
        )));
        same(Arc::new(UInt64Array::from_iter(
            ints().map(|v| v.map(|v| v as u64)),
        )));
        same(Arc::new(UInt32Array::from_iter(
            ints().map(|v| v.map(|v| v as u32)),
        )));
        same(Arc::new(UInt16Array::from_iter(
            ints().map(|v| v.map(|v| v as u16)),
        )));
        same(Arc::new(UInt8Array::from_iter(
            ints().map(|v| v.map(|v| v as u8)),
        )));
        same(Arc::new(BooleanArray::from(vec![
            Some(true),
            None,
            Some(false),
        ])));
        same(Arc::new(NullArray::new(3)));
        let floats = [
            0.25,
            -0.0,
            1.0,
            1e21,
            1.5e-7,
            f64::NAN,
            f64::INFINITY,
            f64::MIN,
        ];
        same(Arc::new(Float64Array::from_iter(
            floats.map(Some).into_iter().chain([None]),
        )));
        same(Arc::new(Float32Array::from_iter(
            floats.map(|v| Some(v as f32)),
        )));
        let f32s = Float32Array::from_iter(floats.map(|v| Some(v as f32)));
        same(arrow_cast::cast(&f32s, &DataType::Float16).unwrap());
        for (precision, scale) in [(10, 2), (38, 0), (20, 7), (5, -3)] {
            let values = [101, -5, 0, 123_456_789, -99_999];
            same(Arc::new(
                Decimal128Array::from_iter(
                    values.map(|v| Some(v as i128)).into_iter().chain([None]),
                )
                .with_precision_and_scale(precision, scale)
                .unwrap(),
            ));
            let precision = precision.min(9);
            same(Arc::new(
                Decimal32Array::from_iter(values.map(Some))
                    .with_precision_and_scale(precision, scale)
                    .unwrap(),
            ));
            same(Arc::new(
                Decimal64Array::from_iter(values.map(|v| Some(v as i64)))
                    .with_precision_and_scale(precision, scale)
                    .unwrap(),
            ));
            same(Arc::new(
                Decimal256Array::from_iter(values.map(|v| Some(arrow_buffer::i256::from(v))))
                    .with_precision_and_scale(precision, scale)
                    .unwrap(),
            ));
        }
        let days = [0, 20_415, -1, 2_932_896];
        same(Arc::new(Date32Array::from_iter(
            days.map(Some).into_iter().chain([None]),
        )));
        same(Arc::new(Date64Array::from_iter_values(
            days.map(|d| d as i64 * 86_400_000 + 1),
        )));
        same(Arc::new(Time32SecondArray::from(vec![0, 3_599, 86_399])));
        same(Arc::new(Time32MillisecondArray::from(vec![
            0, 3_599_001, 86_399_999,
        ])));
        same(Arc::new(Time64MicrosecondArray::from(vec![
            0,
            3_599_000_001,
        ])));
        same(Arc::new(Time64NanosecondArray::from(vec![
            0,
            3_599_000_000_001,
        ])));
        for tz in [
            None,
            Some("UTC"),
            Some("+08:00"),
            Some("Asia/Shanghai"),
            Some("-03:30"),
        ] {
            let secs = TIMES.map(Some).into_iter().chain([None]);
            let ms = TIMES.map(|s| Some(s * 1000 + 26));
            let us = TIMES.map(|s| Some(s * 1_000_000 + 26_490));
            let ns = TIMES.map(|s| Some(s * 1_000_000_000 + 1));
            same(Arc::new(
                TimestampSecondArray::from_iter(secs).with_timezone_opt(tz),
            ));
            same(Arc::new(
                TimestampMillisecondArray::from_iter(ms).with_timezone_opt(tz),
            ));
            same(Arc::new(
                TimestampMicrosecondArray::from_iter(us).with_timezone_opt(tz),
            ));
            same(Arc::new(
                TimestampNanosecondArray::from_iter(ns).with_timezone_opt(tz),
            ));
        }
        let spans = [0, 90, -3_601, 86_400 * 400 + 1];
        same(Arc::new(DurationSecondArray::from(spans.to_vec())));
        same(Arc::new(DurationMillisecondArray::from(
            spans.map(|s| s * 1000 + 7).to_vec(),
        )));
        same(Arc::new(DurationMicrosecondArray::from(
            spans.map(|s| s * 1_000_000).to_vec(),
        )));
        same(Arc::new(DurationNanosecondArray::from(
            spans.map(|s| s * 1_000_000_000).to_vec(),
        )));
        let text = vec![Some("a, é"), None, Some(""), Some(" x ")];
        same(Arc::new(StringArray::from(text.clone())));
        same(Arc::new(LargeStringArray::from(text.clone())));
        same(Arc::new(StringViewArray::from(text.clone())));
        let bytes: Vec<Option<&[u8]>> = vec![Some(b"\x00\xffab"), None, Some(b"")];
        same(Arc::new(BinaryArray::from(bytes.clone())));
        same(Arc::new(LargeBinaryArray::from(bytes.clone())));
        same(Arc::new(BinaryViewArray::from(bytes)));
        same(Arc::new(
            FixedSizeBinaryArray::try_from_sparse_iter_with_size(
                [Some(b"ab"), None, Some(b"\x01\x02")].into_iter(),
                2,
            )
            .unwrap(),
        ));
        let dict: DictionaryArray<Int32Type> =
            vec![Some("u-even"), None, Some("u-odd"), Some("u-even")]
                .into_iter()
                .collect();
        same(Arc::new(dict));
        let dict: DictionaryArray<UInt8Type> = vec![None::<&str>, None].into_iter().collect();
        same(Arc::new(dict));
        let ints_dict = DictionaryArray::new(
            UInt16Array::from(vec![Some(1), None, Some(0)]),
            Arc::new(Int64Array::from(vec![Some(7), None])),
        );
        same(Arc::new(ints_dict));
    }

    #[test]
    fn prints_nested_values_as_arrow_does() {
        let mut list = ListBuilder::new(Int32Builder::new());
        list.append_value([Some(1), None, Some(3)]);
        list.append_null();
        list.append_value([]);
        let list = list.finish();
        same(Arc::new(list.clone()));
        let mut large = LargeListBuilder::new(StringBuilder::new());
        large.append_value([Some("a"), None]);
        same(Arc::new(large.finish()));
        let mut fixed = FixedSizeListBuilder::new(Float64Builder::new(), 2);
        fixed.values().append_value(0.5);
        fixed.values().append_null();
        fixed.append(true);
        fixed.values().append_value(1.0);
        fixed.values().append_value(2.0);
        fixed.append(false);
        same(Arc::new(fixed.finish()));
        let fields = Fields::from(vec![
            Field::new("n", DataType::Int32, true),
            Field::new("l", list.data_type().clone(), true),
        ]);
        let nulls = NullBuffer::from(vec![true, false, true]);
        let strukt = StructArray::new(
            fields,
            vec![
                Arc::new(Int32Array::from(vec![Some(1), Some(2), None])),
                Arc::new(list),
            ],
            Some(nulls),
        );
        same(Arc::new(strukt));
        let mut map = MapBuilder::new(None, StringBuilder::new(), Int64Builder::new());
        map.keys().append_value("k1");
        map.values().append_value(1);
        map.keys().append_value("k2");
        map.values().append_null();
        map.append(true).unwrap();
        map.append(false).unwrap();
        map.append(true).unwrap();
        same(Arc::new(map.finish()));
    }

    #[test]
    fn refuses_what_it_cannot_print_by_type_and_timezone() {
        let interval = IntervalDayTimeArray::from(vec![IntervalDayTime::new(1, 2)]);
        let e = Text::new(&interval).err().unwrap().to_string();
        assert_eq!(e, "Interval(DayTime) has no text form here");
        let bad = TimestampSecondArray::from(vec![1]).with_timezone("Mars/Olympus");
        let e = Text::new(&bad).err().unwrap().to_string();
        assert_eq!(e, "unknown timezone `Mars/Olympus`");
    }

    /// Past chrono's range arrow-cast prints an error in the cell; the stored integer is kept.
    #[test]
    fn a_timestamp_past_chronos_range_keeps_its_integer() {
        let far = TimestampSecondArray::from(vec![i64::MAX]);
        assert_eq!(
            Text::new(&far).unwrap().get(0, &mut String::new()),
            i64::MAX.to_string()
        );
    }

    proptest! {
        #[test]
        fn any_value_prints_as_arrow_prints_it(
            i in any::<i64>(),
            f in any::<f64>(),
            d in any::<i128>(),
            scale in -10i8..38,
            ts in -8_000_000_000_000i64..8_000_000_000_000,
        ) {
            let decimal = Decimal128Array::from(vec![d % 10i128.pow(38)])
                .with_precision_and_scale(38, scale)
                .unwrap();
            let arrays: [ArrayRef; 5] = [
                Arc::new(Int64Array::from(vec![i])),
                Arc::new(Float64Array::from(vec![f])),
                Arc::new(decimal),
                Arc::new(TimestampMillisecondArray::from(vec![ts]).with_timezone("Europe/Paris")),
                Arc::new(TimestampMicrosecondArray::from(vec![ts])),
            ];
            for a in arrays {
                let (ours, arrow) = both(a.as_ref());
                prop_assert_eq!(ours, arrow);
            }
        }
    }
}
