//! Parquet input: columns keep their Arrow types (ints, decimals, timestamps, dictionary
//! strings, nulls) all the way to a Parquet output.

use std::fs::File;
use std::path::Path;

use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};

use super::{Batch, Inner, InputError, KeyColumns, KeySpec, Reader, BATCH_ROWS};

pub(super) struct ParquetReader {
    file: String,
    reader: ParquetRecordBatchReader,
    keys: KeyColumns,
    next_row: u64,
}

impl ParquetReader {
    pub(super) fn open(path: &Path, spec: &KeySpec) -> Result<Reader, InputError> {
        let file = path.display().to_string();
        let f = File::open(path).map_err(|source| InputError::Io {
            file: file.clone(),
            source,
        })?;
        let total_bytes = f.metadata().ok().map(|m| m.len());
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| InputError::NotParquet {
                file: file.clone(),
                message: e.to_string(),
            })?;
        let total_rows = u64::try_from(builder.metadata().file_metadata().num_rows()).ok();
        let schema = builder.schema().clone();
        let keys = KeyColumns::find(&schema, spec, &file)?;
        let reader =
            builder
                .with_batch_size(BATCH_ROWS)
                .build()
                .map_err(|e| InputError::Parquet {
                    file: file.clone(),
                    message: e.to_string(),
                })?;
        Ok(Reader {
            schema,
            total_rows,
            total_bytes,
            inner: Inner::Parquet(ParquetReader {
                file,
                reader,
                keys,
                next_row: 1,
            }),
        })
    }

    pub(super) fn next_batch(&mut self) -> Option<Result<Batch, InputError>> {
        let data = match self.reader.next()? {
            Ok(data) => data,
            Err(e) => {
                return Some(Err(InputError::Row {
                    file: self.file.clone(),
                    row: self.next_row,
                    message: format!("cannot decode the rows from here on: {e}"),
                }))
            }
        };
        let first_row = self.next_row;
        self.next_row += data.num_rows() as u64;
        let keys = self.keys.extract(&data);
        Some(Ok(Batch {
            first_row,
            data,
            keys,
        }))
    }
}
