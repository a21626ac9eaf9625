//! Enriched rows as Parquet: the input schema kept as read (types carried, not guessed),
//! then the added columns. Row groups are capped so memory does not grow with the input.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{GzipLevel, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use super::{columns, Done, Layout, OutputError, Sink};
use crate::input::call_id_column;

/// ArrowWriter holds a whole row group in memory: 64 Ki rows keeps that to a few MB and
/// is still large enough for readers to scan efficiently.
pub const ROW_GROUP_ROWS: usize = 64 * 1024;

/// `--compression`: zstd by default, the smallest files that every reader of the field
/// (Spark, DuckDB, pyarrow, Polars) reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    Zstd,
    Snappy,
    Lz4,
    Gzip,
    None,
}

impl Compression {
    fn codec(self) -> parquet::basic::Compression {
        use parquet::basic::Compression as C;
        match self {
            Compression::Zstd => C::ZSTD(ZstdLevel::default()),
            Compression::Snappy => C::SNAPPY,
            Compression::Lz4 => C::LZ4_RAW,
            Compression::Gzip => C::GZIP(GzipLevel::default()),
            Compression::None => C::UNCOMPRESSED,
        }
    }
}

pub(super) struct ParquetRows {
    writer: ArrowWriter<Sink>,
    schema: SchemaRef,
    columns: columns::Selection,
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
        layout: &Layout,
        name: &str,
    ) -> Result<ParquetRows, OutputError> {
        let mut fields: Vec<_> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.extend(layout.columns.fields());
        let schema = Arc::new(Schema::new_with_metadata(fields, input.metadata().clone()));
        let mut props = WriterProperties::builder()
            .set_compression(layout.compression.codec())
            .set_max_row_group_row_count(Some(layout.row_group_rows));
        if let Some(call_id) = call_id_column(input, &layout.call_id) {
            props = props.set_column_dictionary_enabled(ColumnPath::from(call_id), false);
        }
        let props = props.build();
        let writer =
            ArrowWriter::try_new(sink, schema.clone(), Some(props)).map_err(|e| error(name, e))?;
        Ok(ParquetRows {
            writer,
            schema,
            columns: layout.columns.clone(),
        })
    }

    pub(super) fn write(&mut self, done: &Done, name: &str) -> Result<(), OutputError> {
        let mut arrays = done.data.columns().to_vec();
        arrays.extend(self.columns.arrays(&done.outcomes));
        let batch =
            RecordBatch::try_new(self.schema.clone(), arrays).map_err(|e| error(name, e))?;
        self.writer.write(&batch).map_err(|e| error(name, e))
    }

    /// Flushes the last row group and writes the footer.
    pub(super) fn finish(self, name: &str) -> Result<Sink, OutputError> {
        self.writer.into_inner().map_err(|e| error(name, e))
    }
}
