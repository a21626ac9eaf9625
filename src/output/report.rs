//! The error report: one CSV line per row whose `lookup_status` is not `ok`, with what a
//! person needs to act on it.

use super::{Destination, Done, Layout, OutputError, Sink, Uploads};

pub const HEADER: [&str; 6] = [
    "row",
    "call_id",
    "kind",
    "http_status",
    "attempts",
    "message",
];

pub(super) struct Report {
    writer: csv::Writer<Sink>,
    name: String,
}

impl Report {
    /// Comma-separated, unless `--excel` asks for Excel's text: then as the output is.
    pub(super) fn create(
        dest: &Destination,
        uploads: &Uploads,
        layout: &Layout,
    ) -> Result<Report, OutputError> {
        let name = dest.name();
        let file = Sink::open(dest, uploads)?;
        let delimiter = if layout.excel { layout.delimiter } else { b',' };
        let writer =
            super::csv::writer(file, delimiter, layout.excel).map_err(OutputError::io(&name))?;
        let mut report = Report { writer, name };
        report
            .writer
            .write_record(HEADER)
            .map_err(|e| report.error(e))?;
        Ok(report)
    }

    pub(super) fn sink(&self) -> &Sink {
        self.writer.get_ref()
    }

    fn error(&self, e: csv::Error) -> OutputError {
        super::csv::io_error(&self.name, e)
    }

    pub(super) fn write(&mut self, done: &Done) -> Result<(), OutputError> {
        for (i, (outcome, key)) in done.outcomes.iter().zip(done.keys.iter()).enumerate() {
            let Some(f) = outcome.failure() else { continue };
            let row = (done.first_row + i as u64).to_string();
            let status = f.http_status.map_or(String::new(), |s| s.to_string());
            let record = [
                &row,
                key.call_id(),
                f.kind.as_str(),
                &status,
                &f.attempts.to_string(),
                &f.message,
            ];
            if let Err(e) = self.writer.write_record(record) {
                return Err(self.error(e));
            }
        }
        Ok(())
    }

    pub(super) fn finish(self) -> Result<(), OutputError> {
        let name = self.name;
        let file = self
            .writer
            .into_inner()
            .map_err(|e| OutputError::io(&name)(e.into_error()))?;
        file.commit(&name)
    }
}
