//! Enriched rows as Parquet: the input schema kept as read (types carried, not guessed),
//! then the added columns. Row groups are capped so memory does not grow with the input.

use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::{columns, Done, OutputError, Sink};

/// ArrowWriter holds a whole row group in memory: 64 Ki rows keeps that to a few MB and
/// is still large enough for readers to scan efficiently.
const ROW_GROUP_ROWS: usize = 64 * 1024;

pub(super) struct ParquetRows {
    writer: ArrowWriter<Sink>,
    schema: SchemaRef,
}

fn error(name: &str, e: impl std::fmt::Display) -> OutputError {
    OutputError::Parquet {
        file: name.to_owned(),
        message: e.to_string(),
    }
}

impl ParquetRows {
    pub(super) fn new(
        sink: Sink,
        input: &SchemaRef,
        name: &str,
    ) -> Result<ParquetRows, OutputError> {
        let mut fields: Vec<_> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.extend(columns::fields());
        let schema = Arc::new(Schema::new_with_metadata(fields, input.metadata().clone()));
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .build();
        let writer =
            ArrowWriter::try_new(sink, schema.clone(), Some(props)).map_err(|e| error(name, e))?;
        Ok(ParquetRows { writer, schema })
    }

    pub(super) fn write(&mut self, done: &Done, name: &str) -> Result<(), OutputError> {
        let mut arrays = done.data.columns().to_vec();
        arrays.extend(columns::arrays(&done.outcomes));
        let batch =
            RecordBatch::try_new(self.schema.clone(), arrays).map_err(|e| error(name, e))?;
        self.writer.write(&batch).map_err(|e| error(name, e))
    }

    /// Flushes the last row group and writes the footer.
    pub(super) fn finish(self, name: &str) -> Result<Sink, OutputError> {
        self.writer.into_inner().map_err(|e| error(name, e))
    }
}
