//! Enriched rows as CSV: the input columns as read, then the added columns.

use arrow_schema::SchemaRef;

use super::columns::{Selection, Value};
use super::{Done, Layout, OutputError, Sink};
use crate::text::Text;

pub(super) struct CsvRows {
    writer: csv::Writer<Sink>,
    columns: Selection,
}

fn io_error(name: &str, e: csv::Error) -> OutputError {
    let source = match e.into_kind() {
        csv::ErrorKind::Io(io) => io,
        other => std::io::Error::other(format!("{other:?}")),
    };
    OutputError::Io {
        file: name.to_owned(),
        source,
    }
}

impl CsvRows {
    pub(super) fn new(
        sink: Sink,
        schema: &SchemaRef,
        layout: &Layout,
        name: &str,
    ) -> Result<CsvRows, OutputError> {
        // A column that cannot be printed is found now, before any lookup is paid for.
        for field in schema.fields() {
            let empty = arrow_array::new_empty_array(field.data_type());
            let checked = Text::new(empty.as_ref()).map(|_| ());
            if let Err(e) = checked {
                return Err(OutputError::Io {
                    file: name.to_owned(),
                    source: std::io::Error::other(format!(
                        "column `{}` ({}) cannot be written as CSV text: {e}; write Parquet instead",
                        field.name(),
                        field.data_type()
                    )),
                });
            }
        }
        let mut writer = csv::WriterBuilder::new()
            .buffer_capacity(256 * 1024)
            .delimiter(layout.delimiter)
            .from_writer(sink);
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
            .map_err(|e| OutputError::Io {
                file: name.to_owned(),
                source: std::io::Error::other(e.to_string()),
            })?;
        let mut text = String::new();
        let mut int_buf = itoa::Buffer::new();
        let err = |e| io_error(name, e);
        let w = &mut self.writer;
        for (row, outcome) in done.outcomes.iter().enumerate() {
            for cell in &cells {
                w.write_field(cell.get(row, &mut text)).map_err(err)?;
            }
            for column in &self.columns.columns {
                match column.value(outcome) {
                    Value::Text(v) => w.write_field(v.unwrap_or("")),
                    Value::Int(v) => write_int(w, &mut int_buf, v),
                }
                .map_err(err)?;
            }
            w.write_record(None::<&[u8]>).map_err(err)?;
        }
        Ok(())
    }

    pub(super) fn finish(self, name: &str) -> Result<Sink, OutputError> {
        self.writer.into_inner().map_err(|e| OutputError::Io {
            file: name.to_owned(),
            source: std::io::Error::new(e.error().kind(), e.error().to_string()),
        })
    }
}

/// An integer cell, formatted without allocating (empty when absent).
fn write_int(w: &mut csv::Writer<Sink>, buf: &mut itoa::Buffer, v: Option<i64>) -> csv::Result<()> {
    match v {
        Some(v) => w.write_field(buf.format(v)),
        None => w.write_field(""),
    }
}
