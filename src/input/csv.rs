//! CSV input: any RFC 4180 file (quoted commas and newlines, a UTF-8 BOM, non-ASCII),
//! plain, gzip or zstd, in UTF-8 or the `--encoding` given; every column read as text and
//! passed through unchanged.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::ArrayRef;
use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Schema, SchemaRef};

use super::types::Typing;
use super::{Batch, Codec, CsvText, InputError, KeyColumns, KeySpec, Source, BATCH_ROWS};

pub(super) struct CsvReader {
    file: String,
    reader: csv::Reader<Box<dyn Read + Send>>,
    schema: SchemaRef,
    keys: KeyColumns,
    record: csv::StringRecord,
    /// Lines end in CRLF: csv's line numbers of data rows are one short.
    crlf: bool,
    /// Bytes of a compressed source read so far.
    read: Option<Arc<AtomicU64>>,
    next_row: u64,
    done: bool,
    /// `--infer-types`: the columns' types, from the first batch.
    typing: Option<Typing>,
    /// The first batch, read at open for `--infer-types`.
    first: Option<Option<Result<Batch, InputError>>>,
}

impl CsvReader {
    pub(super) fn open(
        source: &Source,
        codec: Codec,
        keys: &KeySpec,
        text: &CsvText,
    ) -> Result<(CsvReader, Option<u64>), InputError> {
        let file = source.name();
        let io = |source| InputError::Io {
            file: file.clone(),
            source,
        };
        let (raw, total_bytes) = open_source(source)?;
        // Progress counts the bytes of the file as stored.
        let read = Arc::new(AtomicU64::new(0));
        let counted = Counted {
            inner: raw,
            read: read.clone(),
        };
        let mut buffered =
            BufReader::with_capacity(256 * 1024, decoder(counted, codec, text).map_err(io)?);
        let start = buffered.fill_buf().map_err(io)?;
        if codec == Codec::None {
            let codec = Codec::sniff(start);
            if codec != Codec::None {
                return Err(InputError::Compressed { file, codec });
            }
        }
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
            .delimiter(text.delimiter)
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
        let keys = KeyColumns::find(&schema, keys, &file)?;
        let mut reader = CsvReader {
            file,
            reader,
            schema,
            keys,
            record: csv::StringRecord::new(),
            crlf,
            read: (codec != Codec::None).then_some(read),
            next_row: 1,
            done: false,
            typing: None,
            first: None,
        };
        if text.infer_types {
            // The first batch is the sample: read now, so the schema is known before any
            // lookup, and given out first.
            let first = reader.read_text();
            if let Some(Ok(batch)) = &first {
                reader.typing = Some(Typing::infer(&batch.data, &reader.keys.indices()));
            }
            reader.first = Some(first);
        }
        Ok((reader, total_bytes))
    }

    /// Bytes of the file read into rows: for a compressed file, the compressed bytes the
    /// decoder took, a buffer ahead of the rows.
    pub(super) fn bytes_read(&self) -> u64 {
        match &self.read {
            Some(read) => read.load(Ordering::Relaxed),
            None => self.reader.position().byte(),
        }
    }

    /// The schema of the batches given out: typed with `--infer-types`.
    pub(super) fn schema(&self) -> SchemaRef {
        match &self.typing {
            Some(t) => t.schema.clone(),
            None => self.schema.clone(),
        }
    }

    pub(super) fn next_batch(&mut self) -> Option<Result<Batch, InputError>> {
        let batch = match self.first.take() {
            Some(first) => first?,
            None => self.read_text()?,
        };
        let Some(typing) = &self.typing else {
            return Some(batch);
        };
        let typed = batch.and_then(|mut b| {
            b.data = typing.apply(&b.data, &self.file, b.first_row)?;
            Ok(b)
        });
        self.done |= typed.is_err();
        Some(typed)
    }

    /// The next batch, every column as text.
    fn read_text(&mut self) -> Option<Result<Batch, InputError>> {
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
                "{} is not valid UTF-8 (line {}); pass its encoding (Excel's CSV is --encoding windows-1252), or re-export the file as UTF-8",
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

/// The source's bytes as stored, and how many there are where that is known.
fn open_source(source: &Source) -> Result<(Box<dyn Read + Send>, Option<u64>), InputError> {
    let io = |e| InputError::Io {
        file: source.name(),
        source: e,
    };
    Ok(match source {
        Source::File(path) => {
            let f = File::open(path).map_err(io)?;
            let len = f.metadata().map_err(io)?.len();
            (Box::new(f), Some(len))
        }
        Source::Object(url) => {
            let bucket = crate::objects::Bucket::of(url)?;
            let size = bucket.existing_size(url)?;
            let reader = crate::objects::ObjectReader::new(bucket, url.clone(), size, 0);
            (Box::new(reader), Some(size))
        }
        Source::Stdin => (Box::new(std::io::stdin()), None),
    })
}

/// The source's bytes as UTF-8 text: decompressed, then transcoded from `--encoding`. A
/// BOM (UTF-8 or UTF-16) says the encoding whatever `--encoding` says, as Excel reads it.
fn decoder(raw: Counted, codec: Codec, text: &CsvText) -> std::io::Result<Box<dyn Read + Send>> {
    let plain: Box<dyn Read + Send> = match codec {
        Codec::None => Box::new(raw),
        Codec::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
        Codec::Zstd => Box::new(zstd::stream::read::Decoder::new(raw)?),
    };
    Ok(match text.encoding {
        Some(encoding) => Box::new(
            encoding_rs_io::DecodeReaderBytesBuilder::new()
                .encoding(Some(encoding))
                .build(plain),
        ),
        None => plain,
    })
}

/// The source, counting the bytes read from it.
struct Counted {
    inner: Box<dyn Read + Send>,
    read: Arc<AtomicU64>,
}

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}
