//! Object storage (`s3://bucket/key`: AWS S3, Huawei OBS, MinIO): the store from the AWS
//! environment variables, listing, ranged reads as `std::io::Read` and parquet's
//! `ChunkReader`, and uploads as `std::io::Write`. Readers and writers run on blocking
//! threads, so this drives object_store's async calls with `Handle::block_on` there.
//!
//! Uploads use object_store's `MultipartStore` directly rather than its `BufWriter` (or
//! parquet's `ParquetObjectWriter`, built on it): the upload's ID must be recorded before
//! the first part goes, so that a rerun can abort the parts a killed run left, and
//! `BufWriter` never shows it. Reads are ranged requests of [`CHUNK`] bytes rather than
//! one streamed GET, which the client's request timeout would cut on a slow, paced run.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read};
use std::ops::Range;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as Key;
use object_store::{ObjectStore, PutPayload};
use tokio::runtime::Handle;

/// Bytes per ranged read, once reading is under way.
pub const CHUNK: u64 = 8 << 20;
/// The first read's size.
const FIRST_CHUNK: u64 = 256 << 10;
/// Bytes per uploaded part: every part but the last has this size, as some S3-compatible
/// stores require, and it is above S3's 5 MiB minimum.
pub const PART: usize = 8 << 20;

/// `s3://bucket/key`. A key ending in `/` (or empty) is a prefix.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectUrl {
    pub bucket: String,
    pub key: String,
}

impl ObjectUrl {
    /// `None` when `s` is not an object URL at all; an error for one that is malformed.
    pub fn parse(s: &str) -> Option<Result<ObjectUrl, String>> {
        let rest = s.strip_prefix("s3://")?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Some(Err(format!("{s}: no bucket name after s3://")));
        }
        // The object store client addresses a key segment by segment: an empty one (`//`)
        // would silently become another key (`a//x.csv` is read as `a/x.csv`).
        let segments = key.strip_suffix('/').unwrap_or(key);
        if !segments.is_empty() && segments.split('/').any(|p| matches!(p, "" | "." | "..")) {
            return Some(Err(format!(
                "{s}: a key with an empty segment (`//`), `.` or `..` cannot be addressed; copy the object to a plain key"
            )));
        }
        Some(Ok(ObjectUrl {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        }))
    }

    pub fn is_prefix(&self) -> bool {
        self.key.is_empty() || self.key.ends_with('/')
    }

    /// The object `name` under this prefix.
    pub fn join(&self, name: &str) -> ObjectUrl {
        let mut key = self.key.clone();
        if !key.is_empty() && !key.ends_with('/') {
            key.push('/');
        }
        key.push_str(name);
        ObjectUrl {
            bucket: self.bucket.clone(),
            key,
        }
    }

    /// The last part of the key.
    pub fn file_name(&self) -> &str {
        self.key.rsplit('/').next().unwrap_or("")
    }

    /// The key exactly as written: `Key::from` would percent-encode `~` and `%` and ask
    /// for another object. `parse` refuses only what `ObjectUrl::parse` refused already.
    fn location(&self) -> Key {
        Key::parse(&self.key).unwrap_or_else(|_| Key::from(self.key.as_str()))
    }
}

impl fmt::Display for ObjectUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// What went wrong, in words that say what to check. Never holds a credential:
/// object_store's messages name the URL and the server's answer, not the keys.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("{url}: no such object; check the key (and that the input was exported)")]
    NotFound { url: String },
    #[error("{url}: the bucket `{bucket}` does not exist at {endpoint}; check the bucket name, AWS_ENDPOINT_URL and AWS_REGION")]
    NoBucket {
        url: String,
        bucket: String,
        endpoint: String,
    },
    #[error("{url}: access denied; check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) and what the bucket's policy allows ({message})")]
    Denied { url: String, message: String },
    #[error("{url}: {message}")]
    Other { url: String, message: String },
}

impl ObjectError {
    fn new(url: &ObjectUrl, e: object_store::Error) -> ObjectError {
        let url_s = url.to_string();
        let message = e.to_string();
        match e {
            _ if message.contains("NoSuchBucket") => ObjectError::NoBucket {
                url: url_s,
                bucket: url.bucket.clone(),
                endpoint: endpoint(),
            },
            object_store::Error::NotFound { .. } => ObjectError::NotFound { url: url_s },
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => ObjectError::Denied {
                url: url_s,
                message,
            },
            _ if message.contains("AccessDenied")
                || message.contains("InvalidAccessKeyId")
                || message.contains("SignatureDoesNotMatch") =>
            {
                ObjectError::Denied {
                    url: url_s,
                    message,
                }
            }
            _ => ObjectError::Other {
                url: url_s,
                message,
            },
        }
    }
}

impl From<ObjectError> for io::Error {
    fn from(e: ObjectError) -> io::Error {
        io::Error::other(e.to_string())
    }
}

fn endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL")
        .or_else(|_| std::env::var("AWS_ENDPOINT"))
        .unwrap_or_else(|_| "AWS S3 (no AWS_ENDPOINT_URL set)".into())
}

/// One bucket's client. Cheap to clone; one per bucket per run, so connections are reused.
#[derive(Clone)]
pub struct Bucket {
    store: Arc<AmazonS3>,
    runtime: Handle,
}

impl Bucket {
    /// The bucket of `url`, configured from the standard AWS environment variables.
    /// Call it on the async runtime (or a thread it spawned): the handle is taken here.
    pub fn of(url: &ObjectUrl) -> Result<Bucket, ObjectError> {
        static BUCKETS: OnceLock<Mutex<HashMap<String, Bucket>>> = OnceLock::new();
        let mut buckets = BUCKETS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(b) = buckets.get(&url.bucket) {
            return Ok(b.clone());
        }
        let runtime = Handle::try_current().map_err(|_| ObjectError::Other {
            url: url.to_string(),
            message: "object storage needs the async runtime".into(),
        })?;
        let store = AmazonS3Builder::from_env()
            .with_bucket_name(&url.bucket)
            .with_allow_http(endpoint().starts_with("http://"))
            .build()
            .map_err(|e| ObjectError::new(url, e))?;
        let bucket = Bucket {
            store: Arc::new(store),
            runtime,
        };
        buckets.insert(url.bucket.clone(), bucket.clone());
        Ok(bucket)
    }

    fn wait<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.runtime.block_on(f)
    }

    /// The size of an object that must be there. Blocking.
    pub fn existing_size(&self, url: &ObjectUrl) -> Result<u64, ObjectError> {
        let missing = || ObjectError::NotFound {
            url: url.to_string(),
        };
        self.size(url)?.ok_or_else(missing)
    }

    /// The object's size, or `None` when it does not exist. Blocking.
    pub fn size(&self, url: &ObjectUrl) -> Result<Option<u64>, ObjectError> {
        match self.wait(self.store.head(&url.location())) {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => {
                // A missing bucket answers a HEAD with a bare 404 too: tell them apart.
                self.wait(self.store.list_with_delimiter(None))
                    .map_err(|e| ObjectError::new(url, e))
                    .map(|_| None)
            }
            Err(e) => Err(ObjectError::new(url, e)),
        }
    }

    /// The object's size and ETag (else its modification time), or `None` when it does not
    /// exist: what says it changed. Blocking.
    pub fn stamp(&self, url: &ObjectUrl) -> Result<Option<String>, ObjectError> {
        match self.wait(self.store.head(&url.location())) {
            Ok(meta) => Ok(Some(format!(
                "{}:{}",
                meta.size,
                meta.e_tag
                    .unwrap_or_else(|| meta.last_modified.timestamp_micros().to_string())
            ))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(ObjectError::new(url, e)),
        }
    }

    /// The objects under `prefix` (recursive), with their sizes, in key order. Blocking.
    pub fn list(&self, prefix: &ObjectUrl) -> Result<Vec<(ObjectUrl, u64)>, ObjectError> {
        let location = (!prefix.key.is_empty()).then(|| prefix.location());
        let found: Vec<_> = self
            .wait(self.store.list(location.as_ref()).try_collect::<Vec<_>>())
            .map_err(|e| ObjectError::new(prefix, e))?;
        let mut found: Vec<_> = found
            .into_iter()
            .map(|meta| {
                let url = ObjectUrl {
                    bucket: prefix.bucket.clone(),
                    key: meta.location.to_string(),
                };
                (url, meta.size)
            })
            .collect();
        found.sort_by(|a, b| a.0.key.cmp(&b.0.key));
        Ok(found)
    }

    pub fn get_range(&self, url: &ObjectUrl, range: Range<u64>) -> Result<Bytes, ObjectError> {
        self.wait(self.store.get_range(&url.location(), range))
            .map_err(|e| ObjectError::new(url, e))
    }

    /// Abort an upload a killed run left. One already gone is no error.
    pub fn abort(&self, url: &ObjectUrl, id: &str) -> Result<(), ObjectError> {
        match self.wait(self.store.abort_multipart(&url.location(), &id.to_owned())) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(ObjectError::new(url, e)),
        }
    }
}

/// An object read front to back in ranged requests, for CSV (and parquet's `get_read`).
pub struct ObjectReader {
    bucket: Bucket,
    url: ObjectUrl,
    size: u64,
    pos: u64,
    chunk: Bytes,
    /// Bytes to ask for next.
    want: u64,
}

impl ObjectReader {
    pub fn new(bucket: Bucket, url: ObjectUrl, size: u64, start: u64) -> ObjectReader {
        ObjectReader {
            bucket,
            url,
            size,
            pos: start.min(size),
            chunk: Bytes::new(),
            want: 0,
        }
    }
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.chunk.is_empty() {
            if self.pos >= self.size {
                return Ok(0);
            }
            // Small at first (opening an input reads only its header), then up to CHUNK.
            self.want = (self.want * 2).clamp(FIRST_CHUNK, CHUNK);
            let end = (self.pos + self.want).min(self.size);
            self.chunk = self.bucket.get_range(&self.url, self.pos..end)?;
            self.pos += self.chunk.len() as u64;
            if self.chunk.is_empty() {
                return Err(io::Error::other(format!(
                    "{}: the object ended before its size",
                    self.url
                )));
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

/// An object as parquet's sync reader sees a file: its footer and column chunks are read
/// with ranged requests, never the whole object.
pub struct ObjectFile {
    pub bucket: Bucket,
    pub url: ObjectUrl,
    pub size: u64,
}

impl parquet::file::reader::Length for ObjectFile {
    fn len(&self) -> u64 {
        self.size
    }
}

impl parquet::file::reader::ChunkReader for ObjectFile {
    type T = ObjectReader;

    fn get_read(&self, start: u64) -> parquet::errors::Result<ObjectReader> {
        Ok(ObjectReader::new(
            self.bucket.clone(),
            self.url.clone(),
            self.size,
            start,
        ))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        self.bucket
            .get_range(&self.url, start..start + length as u64)
            .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))
    }
}

/// Where a run notes the uploads it starts and ends, so the next run can abort those a
/// killed run left (the journal's ledger).
pub trait UploadLog: Send + Sync {
    fn started(&self, url: &ObjectUrl, id: &str) -> io::Result<()>;
    fn ended(&self, id: &str) -> io::Result<()>;
}

/// An object written front to back. Nothing appears under its key until [`Upload::commit`]:
/// a small object is one PUT at the end, a larger one a multipart upload completed at
/// the end. Dropped unfinished, its upload is aborted.
pub struct Upload {
    bucket: Bucket,
    url: ObjectUrl,
    log: Arc<dyn UploadLog>,
    buf: Vec<u8>,
    /// The multipart upload's ID, once started; shared with its [`Aborter`].
    id: Arc<Mutex<Option<String>>>,
    parts: Vec<PartId>,
}

/// Aborts an upload from outside the writer that owns it: a run that stops early drops
/// its unfinished outputs this way, on a blocking thread, and knows the parts are gone.
pub struct Aborter {
    bucket: Bucket,
    url: ObjectUrl,
    log: Arc<dyn UploadLog>,
    id: Arc<Mutex<Option<String>>>,
}

impl Aborter {
    /// Blocking.
    pub fn abort(&self) {
        let id = self.id.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(id) = id {
            if self.bucket.abort(&self.url, &id).is_ok() {
                let _ = self.log.ended(&id);
            }
        }
    }
}

impl Upload {
    pub fn new(bucket: Bucket, url: ObjectUrl, log: Arc<dyn UploadLog>) -> Upload {
        Upload {
            bucket,
            url,
            log,
            buf: Vec::new(),
            id: Arc::default(),
            parts: Vec::new(),
        }
    }

    pub fn aborter(&self) -> Aborter {
        Aborter {
            bucket: self.bucket.clone(),
            url: self.url.clone(),
            log: self.log.clone(),
            id: self.id.clone(),
        }
    }

    fn current_id(&self) -> Option<String> {
        self.id.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn send_part(&mut self, data: Vec<u8>) -> io::Result<()> {
        let (bucket, location) = (self.bucket.clone(), self.url.location());
        let id = match self.current_id() {
            Some(id) => id,
            None => {
                let id = bucket
                    .wait(bucket.store.create_multipart(&location))
                    .map_err(|e| ObjectError::new(&self.url, e))?;
                // Noted before any part goes: a kill from here on leaves parts the next
                // run must find.
                self.log.started(&self.url, &id)?;
                *self.id.lock().unwrap_or_else(|e| e.into_inner()) = Some(id.clone());
                id
            }
        };
        let part = bucket
            .wait(
                bucket
                    .store
                    .put_part(&location, &id, self.parts.len(), PutPayload::from(data)),
            )
            .map_err(|e| ObjectError::new(&self.url, e))?;
        self.parts.push(part);
        Ok(())
    }

    /// Send what is left and make the object appear under its key.
    pub fn commit(mut self) -> io::Result<()> {
        let rest = std::mem::take(&mut self.buf);
        let (bucket, location) = (self.bucket.clone(), self.url.location());
        if self.current_id().is_none() {
            bucket
                .wait(bucket.store.put(&location, PutPayload::from(rest)))
                .map_err(|e| ObjectError::new(&self.url, e))?;
            return Ok(());
        }
        if !rest.is_empty() {
            self.send_part(rest)?;
        }
        let id = self
            .id
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .expect("a multipart upload has an ID");
        let parts = std::mem::take(&mut self.parts);
        let done = bucket.wait(bucket.store.complete_multipart(&location, &id, parts));
        if let Err(e) = done {
            let _ = bucket.wait(bucket.store.abort_multipart(&location, &id));
            let _ = self.log.ended(&id);
            return Err(ObjectError::new(&self.url, e).into());
        }
        self.log.ended(&id)
    }
}

impl io::Write for Upload {
    /// Fills one part-sized buffer and sends it when full: the upload holds at most a part
    /// (and the one being sent) whatever the object's size.
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(PART);
        }
        let n = data.len().min(PART - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == PART {
            let part = std::mem::take(&mut self.buf);
            self.send_part(part)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Upload {
    /// Dropped unfinished (an error unwinding the writer): abort without blocking, as the
    /// drop may happen anywhere. Should the process end first, the ledger still names the
    /// upload and the next run aborts it.
    fn drop(&mut self) {
        if self.current_id().is_some() {
            let aborter = self.aborter();
            self.bucket.runtime.spawn_blocking(move || aborter.abort());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = ObjectUrl::parse("s3://b/exports/day.csv").unwrap().unwrap();
        assert_eq!(
            (u.bucket.as_str(), u.key.as_str()),
            ("b", "exports/day.csv")
        );
        assert_eq!(u.file_name(), "day.csv");
        assert!(!u.is_prefix());
        let p = ObjectUrl::parse("s3://b/out/").unwrap().unwrap();
        assert!(p.is_prefix());
        assert_eq!(p.join("x.parquet").to_string(), "s3://b/out/x.parquet");
        assert!(ObjectUrl::parse("s3://b").unwrap().unwrap().is_prefix());
        assert!(ObjectUrl::parse("s3:///k").unwrap().is_err());
        assert!(ObjectUrl::parse("/tmp/x.csv").is_none());
    }
}
