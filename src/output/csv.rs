//! Enriched rows as CSV (plain, gzip or zstd): the input columns as read, then the added
//! columns.

use std::io::{self, Write};

use arrow_schema::SchemaRef;

use super::columns::{Selection, Value};
use super::{Done, Layout, OutputError, Sink};
use crate::input::Codec;
use crate::text::Text;

pub(super) struct CsvRows {
    writer: csv::Writer<Box<dyn Encoder>>,
    columns: Selection,
}

/// The sink, through the output's compression. Streamed: a block at a time.
trait Encoder: Write + Send {
    /// The compressed stream ended, and the sink it went to.
    fn finish(self: Box<Self>) -> io::Result<Sink>;
}

impl Encoder for Sink {
    fn finish(self: Box<Self>) -> io::Result<Sink> {
        Ok(*self)
    }
}

impl Encoder for flate2::write::GzEncoder<Sink> {
    fn finish(self: Box<Self>) -> io::Result<Sink> {
        flate2::write::GzEncoder::finish(*self)
    }
}

impl Encoder for zstd::stream::write::Encoder<'static, Sink> {
    fn finish(self: Box<Self>) -> io::Result<Sink> {
        zstd::stream::write::Encoder::finish(*self)
    }
}

fn encoder(sink: Sink, codec: Codec) -> io::Result<Box<dyn Encoder>> {
    Ok(match codec {
        Codec::None => Box::new(sink),
        Codec::Gzip => Box::new(flate2::write::GzEncoder::new(
            sink,
            flate2::Compression::default(),
        )),
        Codec::Zstd => Box::new(zstd::stream::write::Encoder::new(sink, 0)?),
    })
}

/// A CSV writer as `layout` asks: its separator, and for `--excel` a UTF-8 BOM and CRLF
/// line ends, which Excel needs to read accents and lines right on a double-click.
pub(super) fn writer<W: Write>(
    mut out: W,
    delimiter: u8,
    excel: bool,
) -> io::Result<csv::Writer<W>> {
    if excel {
        out.write_all(b"\xEF\xBB\xBF")?;
    }
    let terminator = if excel {
        csv::Terminator::CRLF
    } else {
        csv::Terminator::Any(b'\n')
    };
    Ok(csv::WriterBuilder::new()
        .buffer_capacity(256 * 1024)
        .delimiter(delimiter)
        .terminator(terminator)
        .from_writer(out))
}

pub(super) fn io_error(name: &str, e: csv::Error) -> OutputError {
    let source = match e.into_kind() {
        csv::ErrorKind::Io(io) => io,
        other => std::io::Error::other(format!("{other:?}")),
    };
    OutputError::io(name)(source)
}

impl CsvRows {
    pub(super) fn new(
        sink: Sink,
        codec: Codec,
        schema: &SchemaRef,
        layout: &Layout,
        name: &str,
    ) -> Result<CsvRows, OutputError> {
        // A column that cannot be printed is found now, before any lookup is paid for.
        for field in schema.fields() {
            let empty = arrow_array::new_empty_array(field.data_type());
            let checked = Text::new(empty.as_ref()).map(|_| ());
            if let Err(e) = checked {
                return Err(OutputError::io(name)(std::io::Error::other(format!(
                    "column `{}` ({}) cannot be written as CSV text: {e}; write Parquet instead",
                    field.name(),
                    field.data_type()
                ))));
            }
        }
        let io = OutputError::io(name);
        let encoder = encoder(sink, codec).map_err(&io)?;
        let mut writer = writer(encoder, layout.delimiter, layout.excel).map_err(&io)?;
        let header = schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .chain(layout.columns.names());
        writer.write_record(header).map_err(|e| io_error(name, e))?;
        Ok(CsvRows {
            writer,
            columns: layout.columns.clone(),
        })
    }

    pub(super) fn write(&mut self, done: &Done, name: &str) -> Result<(), OutputError> {
        let cells = done
            .data
            .columns()
            .iter()
            .map(|a| Text::new(a.as_ref()))
            .collect::<Result<Vec<Text>, _>>()
            .map_err(|e| OutputError::io(name)(std::io::Error::other(e)))?;
        let mut text = String::new();
        let err = |e| io_error(name, e);
        let w = &mut self.writer;
        for (row, outcome) in done.outcomes.iter().enumerate() {
            for cell in &cells {
                w.write_field(cell.get(row, &mut text)).map_err(err)?;
            }
            for column in &self.columns.columns {
                match column.value(outcome) {
                    Value::Text(v) => w.write_field(v.unwrap_or("")),
                    Value::Int(v) => w.write_field(v.map_or(String::new(), |v| v.to_string())),
                }
                .map_err(err)?;
            }
            w.write_record(None::<&[u8]>).map_err(err)?;
        }
        Ok(())
    }

    pub(super) fn finish(self, name: &str) -> Result<Sink, OutputError> {
        let io = OutputError::io(name);
        let encoder = self.writer.into_inner().map_err(|e| io(e.into_error()))?;
        encoder.finish().map_err(io)
    }
}
