//! `artifact put FILE`: a file sent to a node's artifact store in chunks
//! (`artifact.put`), named by its SHA-256. The caller asks first how much
//! of it the node holds ([`Source::held_params`]), then sends the rest from
//! there ([`Source::chunk_params`]), so an upload cut off half way resumes
//! where it stopped. Shared by sporectl (signed RPC) and spore's local
//! client: only the transport differs.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use artifacts::Digest;
use base64::Engine as _;
use proto::method::MAX_ARTIFACT_CHUNK;
use serde_json::{json, Value};

use crate::display::{printable, text};

/// A file to send that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {file}: {error}")]
pub struct ReadError {
    /// The file as given.
    pub file: String,
    /// Why.
    pub error: std::io::Error,
}

/// A local file to send.
#[derive(Debug, Clone)]
pub struct Source {
    /// The file as given.
    pub file: String,
    path: PathBuf,
    /// The SHA-256 of its bytes.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// Whether it is executable here (it is stored 0555 then, as `scp -p`
    /// keeps the mode).
    pub executable: bool,
}

impl Source {
    /// Reads `file` once to name it.
    pub fn read(file: &str) -> Result<Source, ReadError> {
        let failed = |error| ReadError {
            file: file.to_owned(),
            error,
        };
        let path = PathBuf::from(file);
        let meta = std::fs::metadata(&path).map_err(failed)?;
        if !meta.is_file() {
            return Err(failed(std::io::Error::other("not a regular file")));
        }
        let digest = Digest::of_file(&path).map_err(failed)?;
        Ok(Source {
            file: file.to_owned(),
            path,
            digest,
            size: meta.len(),
            executable: meta.permissions().mode() & 0o111 != 0,
        })
    }

    /// The file, opened and positioned at `offset`.
    pub fn open_at(&self, offset: u64) -> Result<std::fs::File, ReadError> {
        let failed = |error| ReadError {
            file: self.file.clone(),
            error,
        };
        let mut file = std::fs::File::open(&self.path).map_err(failed)?;
        file.seek(SeekFrom::Start(offset)).map_err(failed)?;
        Ok(file)
    }

    /// The first call: how much of it the node holds.
    pub fn held_params(&self) -> Value {
        json!({ "sha256": self.digest.hex(), "size": self.size })
    }

    /// The chunk at `offset` raw, with the params that announce it
    /// (`bytes`); None once the node holds it all.
    pub fn raw_chunk(&self, offset: u64) -> Result<Option<(Value, Vec<u8>)>, ReadError> {
        if offset >= self.size && self.size > 0 {
            return Ok(None);
        }
        let failed = |error| ReadError {
            file: self.file.clone(),
            error,
        };
        let mut file = self.open_at(offset)?;
        let left = usize::try_from(self.size.saturating_sub(offset)).unwrap_or(usize::MAX);
        let mut data = vec![0u8; left.min(MAX_ARTIFACT_CHUNK)];
        file.read_exact(&mut data).map_err(failed)?;
        let params = json!({
            "sha256": self.digest.hex(),
            "size": self.size,
            "offset": offset,
            "bytes": data.len(),
            "executable": self.executable,
        });
        Ok(Some((params, data)))
    }

    /// The call that sends the chunk at `offset` (the bytes the node said
    /// it holds) in base64; None once the node holds it all.
    pub fn chunk_params(&self, offset: u64) -> Result<Option<Value>, ReadError> {
        Ok(self.raw_chunk(offset)?.map(|(mut params, data)| {
            if let Value::Object(map) = &mut params {
                map.remove("bytes");
                map.insert(
                    "data".into(),
                    json!(base64::engine::general_purpose::STANDARD.encode(&data)),
                );
            }
            params
        }))
    }

    /// The answer of the call that completed it, as `artifact put` shows
    /// it.
    pub fn done(&self, answer: &Value) -> Value {
        let mut done = answer.clone();
        if let Value::Object(map) = &mut done {
            map.insert("file".into(), json!(self.file));
        }
        done
    }
}

/// Where to send from, after an answer of `artifact.put`: None when the
/// node holds it all.
pub fn next_offset(answer: &Value) -> Option<u64> {
    if answer.get("complete") == Some(&Value::Bool(true)) {
        return None;
    }
    answer.get("held").and_then(Value::as_u64)
}

/// `artifact list` as text: one row per artifact, then the store's use.
pub fn list_text(result: &Value) -> Vec<String> {
    let mut out = vec![format!("{:<71}  {:>12}  STATE", "SHA256", "SIZE")];
    for entry in result
        .get("artifacts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let size = entry.get("size").and_then(Value::as_u64).unwrap_or(0);
        let state = if entry.get("complete") == Some(&Value::Bool(true)) {
            if entry.get("executable") == Some(&Value::Bool(true)) {
                "verified, executable".to_owned()
            } else {
                "verified".to_owned()
            }
        } else {
            format!(
                "uploading: {} of {size} bytes",
                entry.get("held").and_then(Value::as_u64).unwrap_or(0)
            )
        };
        out.push(format!(
            "sha256:{:<64}  {size:>12}  {state}",
            printable(&text(entry, "sha256"))
        ));
    }
    let omitted = result.get("omitted").and_then(Value::as_u64).unwrap_or(0);
    if omitted > 0 {
        out.push(format!("({omitted} more not listed)"));
    }
    out.push(format!(
        "{} of {} bytes used",
        result
            .get("used_bytes")
            .and_then(Value::as_u64)
            .unwrap_or(0),
        result
            .get("quota_bytes")
            .and_then(Value::as_u64)
            .unwrap_or(0)
    ));
    out
}
