//! CSV input: any RFC 4180 file (quoted commas and newlines, a UTF-8 BOM, non-ASCII),
//! every column read as text and passed through unchanged.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::ArrayRef;
use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Schema, SchemaRef};

use super::{Batch, Inner, InputError, KeyColumns, KeySpec, Reader, Source, BATCH_ROWS};

pub(super) struct CsvReader {
    file: String,
    reader: csv::Reader<Box<dyn Read + Send>>,
    schema: SchemaRef,
    keys: KeyColumns,
    record: csv::StringRecord,
    /// Lines end in CRLF: csv's line numbers of data rows are one short.
    crlf: bool,
    next_row: u64,
    done: bool,
}

impl CsvReader {
    pub(super) fn open(
        source: &Source,
        spec: &KeySpec,
        delimiter: u8,
    ) -> Result<Reader, InputError> {
        let file = source.name();
        let io = |source| InputError::Io {
            file: file.clone(),
            source,
        };
        let (raw, total_bytes): (Box<dyn Read + Send>, _) = match source {
            Source::File(path) => {
                let f = File::open(path).map_err(io)?;
                let len = f.metadata().map_err(io)?.len();
                (Box::new(f), Some(len))
            }
            Source::Object(url) => {
                let bucket = crate::objects::Bucket::of(url)?;
                let size =
                    bucket
                        .size(url)?
                        .ok_or_else(|| crate::objects::ObjectError::NotFound {
                            url: url.to_string(),
                        })?;
                let reader = crate::objects::ObjectReader::new(bucket, url.clone(), size, 0);
                (Box::new(reader), Some(size))
            }
            Source::Stdin => (Box::new(std::io::stdin()), None),
        };
        let mut buffered = BufReader::with_capacity(256 * 1024, raw);
        let start = buffered.fill_buf().map_err(io)?;
        // The csv crate starts a record after a CRLF's `\r`, so its line numbers run one
        // short in files whose lines end in CRLF (Excel's, Windows'): judged by the header.
        let crlf = start
            .iter()
            .position(|&b| b == b'\n')
            .is_some_and(|i| i > 0 && start[i - 1] == b'\r');
        // The csv crate keeps a BOM as part of the first column's name: drop it here.
        if start.starts_with(b"\xEF\xBB\xBF") {
            buffered.consume(3);
        }
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .has_headers(true)
            .flexible(false)
            .from_reader(Box::new(buffered) as Box<dyn Read + Send>);
        let headers = reader
            .headers()
            .map_err(|e| csv_error(&file, e, None, crlf))?
            .clone();
        if headers.is_empty() || (headers.len() == 1 && headers[0].is_empty()) {
            return Err(InputError::Empty { file });
        }
        let fields: Vec<Field> = headers
            .iter()
            .map(|name| Field::new(name, DataType::Utf8, false))
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let keys = KeyColumns::find(&schema, spec, &file)?;
        Ok(Reader {
            schema: schema.clone(),
            total_rows: None,
            total_bytes,
            inner: Inner::Csv(CsvReader {
                file,
                reader,
                schema,
                keys,
                record: csv::StringRecord::new(),
                crlf,
                next_row: 1,
                done: false,
            }),
        })
    }

    pub(super) fn bytes_read(&self) -> u64 {
        self.reader.position().byte()
    }

    pub(super) fn next_batch(&mut self) -> Option<Result<Batch, InputError>> {
        if self.done {
            return None;
        }
        let columns = self.schema.fields().len();
        let mut builders: Vec<StringBuilder> = (0..columns)
            .map(|_| StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 16))
            .collect();
        let first_row = self.next_row;
        let mut rows = 0;
        while rows < BATCH_ROWS {
            match self.reader.read_record(&mut self.record) {
                Ok(true) => {
                    for (builder, value) in builders.iter_mut().zip(self.record.iter()) {
                        builder.append_value(value);
                    }
                    rows += 1;
                    self.next_row += 1;
                }
                Ok(false) => {
                    self.done = true;
                    break;
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(csv_error(&self.file, e, Some(&self.schema), self.crlf)));
                }
            }
        }
        if rows == 0 {
            return None;
        }
        let arrays: Vec<ArrayRef> = builders
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        let data = RecordBatch::try_new(self.schema.clone(), arrays)
            .expect("one builder per schema column, all of the same length");
        let keys = self.keys.extract(&data);
        Some(Ok(Batch {
            file: 0,
            first_row,
            data,
            keys,
        }))
    }
}

/// One line naming the file, the data row and the column where csv can tell them.
fn csv_error(file: &str, e: csv::Error, schema: Option<&SchemaRef>, crlf: bool) -> InputError {
    let column = |i: usize| {
        schema
            .and_then(|s| s.fields().get(i))
            .map(|f| format!("column `{}`", f.name()))
            .unwrap_or_else(|| format!("column {}", i + 1))
    };
    // csv counts records from 0 with the header as record 0: that is the data row number.
    let line = |pos: &Option<csv::Position>| {
        pos.as_ref()
            .map_or(0, |p| p.line() + u64::from(crlf && p.record() > 0))
    };
    let (row, message) = match e.kind() {
        csv::ErrorKind::UnequalLengths {
            pos,
            expected_len,
            len,
        } => (
            pos.as_ref().map(|p| p.record()),
            format!(
                "has {len} fields where the header has {expected_len} (line {})",
                line(pos)
            ),
        ),
        csv::ErrorKind::Utf8 { pos, err } => (
            pos.as_ref().map(|p| p.record()),
            format!(
                "{} is not valid UTF-8 (line {}); re-export the file as UTF-8",
                column(err.field()),
                line(pos)
            ),
        ),
        csv::ErrorKind::Io(io) => {
            return InputError::Io {
                file: file.to_owned(),
                source: std::io::Error::new(io.kind(), io.to_string()),
            }
        }
        _ => (None, e.to_string()),
    };
    match row {
        Some(0) | None => InputError::Header {
            file: file.to_owned(),
            message,
        },
        Some(row) => InputError::Row {
            file: file.to_owned(),
            row,
            message,
        },
    }
}
