//! Parquet input: columns keep their Arrow types (ints, decimals, timestamps, dictionary
//! strings, nulls) all the way to a Parquet output.

use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::file::reader::ChunkReader;

use super::{Batch, Inner, InputError, KeyColumns, KeySpec, Reader, BATCH_ROWS};

pub(super) struct ParquetReader {
    file: String,
    reader: ParquetRecordBatchReader,
    keys: KeyColumns,
    next_row: u64,
}

impl ParquetReader {
    /// `f` is a local file or an object: either is read with ranged reads.
    pub(super) fn open<R: ChunkReader + 'static>(
        f: R,
        file: String,
        total_bytes: Option<u64>,
        spec: &KeySpec,
    ) -> Result<Reader, InputError> {
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
            file: 0,
            first_row,
            data,
            keys,
        }))
    }
}
