//! The cache's bytes on the move: a published body streamed into the
//! store, an artifact streamed out, and one a replica lacks fetched from
//! its peers.

use artifacts::{Digest, Held, Store, Upload};
use rpc::admission::Ending;
use smol::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{status_of, Cache, ARTIFACTS_PATH, IDLE, PIECE};
use crate::{error, respond, Answer, Deadline};

/// Fetches `digest` from the first peer that has it, into `store`
/// (verified there). Returns that peer, or each peer's reason.
pub(super) fn from_peers(
    store: &Store,
    peers: &[String],
    ca: Option<&std::path::Path>,
    digest: Digest,
) -> Result<String, Vec<String>> {
    let mut reasons = Vec::new();
    for peer in peers {
        let url = format!("{peer}{ARTIFACTS_PATH}{}?local=1", digest.hex());
        let mut declared = None;
        let fetched = rpc::fetch::download(&url, ca, IDLE, &mut |size, offset, piece| {
            if declared.is_none() {
                declared = Some(size);
                // What an earlier try left is started afresh.
                store
                    .drop_upload(&digest, size)
                    .map_err(|e| e.to_string())?;
            }
            store
                .put(&Upload {
                    digest,
                    size,
                    offset,
                    data: &piece,
                    executable: false,
                })
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        match fetched {
            Ok(_) => return Ok(peer.clone()),
            Err(reason) => {
                if let Some(size) = declared {
                    let _ = store.drop_upload(&digest, size);
                }
                // A peer that does not have it is not worth a log line.
                if !reason.contains("HTTP 404") {
                    reasons.push(format!("{peer}: {reason}"));
                }
            }
        }
    }
    Err(reasons)
}

/// Streams the body (`rest` already read) into the store from `offset`
/// to `size`, piece by piece on a blocking thread. An upload cut off keeps
/// every byte that arrived, for the next one to resume after.
pub(super) async fn receive<S: AsyncRead + Unpin>(
    cache: &Cache,
    stream: &mut S,
    digest: Digest,
    size: u64,
    mut offset: u64,
    rest: Vec<u8>,
    deadline: &Deadline,
) -> Result<(), Answer> {
    let mut piece = rest;
    piece.truncate(usize::try_from(size - offset).unwrap_or(usize::MAX));
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let held = offset + piece.len() as u64;
        let n = if held == size {
            0
        } else {
            let want = usize::try_from(size - held)
                .unwrap_or(usize::MAX)
                .min(chunk.len());
            stream
                .read(chunk.get_mut(..want).unwrap_or_default())
                .await
                .unwrap_or(0)
        };
        if n > 0 {
            deadline.extend(IDLE);
            piece.extend_from_slice(chunk.get(..n).unwrap_or_default());
            if piece.len() < PIECE {
                continue;
            }
        }
        // A whole piece, the end, or the end of what came.
        if !piece.is_empty() || size == 0 {
            let store = cache.store.clone();
            let data = std::mem::take(&mut piece);
            let at = offset;
            offset += data.len() as u64;
            let stored = smol::unblock(move || {
                store.put(&Upload {
                    digest,
                    size,
                    offset: at,
                    data: &data,
                    executable: false,
                })
            })
            .await;
            if let Err(e) = stored {
                return Err(error(status_of(&e), e.to_string()));
            }
        }
        if offset == size {
            return Ok(());
        }
        if n == 0 {
            return Err(error(400, "the upload ended early"));
        }
    }
}

/// Answers `GET`/`HEAD` for `digest`: its bytes, streamed from disk.
pub(super) async fn send<S: AsyncWrite + Unpin>(
    cache: &Cache,
    stream: &mut S,
    digest: Digest,
    size: Option<u64>,
    head_only: bool,
    deadline: &Deadline,
) -> Result<(), Ending> {
    let path = cache.store.path(&digest);
    let store = cache.store.clone();
    let opened = smol::unblock(move || {
        let held = match size {
            Some(size) => store.held(&digest, size).ok(),
            None => None,
        };
        let file = std::fs::File::open(&path).and_then(|f| Ok((f.metadata()?.len(), f)));
        (file, held)
    })
    .await;
    let (length, file) = match opened {
        (Ok(file), _) => file,
        (Err(_), held) if head_only => {
            // No body: how much of an upload under way it holds, in a header.
            let held = match held {
                Some(Held::Partial(bytes)) => bytes,
                _ => 0,
            };
            let head = format!(
                "HTTP/1.1 404 Not Found\r\nSpore-Held: {held}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let fail = |_| Ending::Failed;
            stream.write_all(head.as_bytes()).await.map_err(fail)?;
            stream.flush().await.map_err(fail)?;
            return stream.close().await.map_err(fail);
        }
        (Err(_), _) => {
            let reply = error(404, format!("no artifact sha256:{digest} here"));
            return respond(stream, &reply).await;
        }
    };
    let head = format!(
        "HTTP/1.1 200 OK\r\nDate: {}\r\nContent-Type: application/octet-stream\r\nContent-Length: {length}\r\nCache-Control: public, max-age=31536000, immutable\r\nConnection: close\r\n\r\n",
        timespan::http_date(std::time::SystemTime::now()),
    );
    let fail = |_| Ending::Failed;
    stream.write_all(head.as_bytes()).await.map_err(fail)?;
    if !head_only {
        let mut reader = smol::Unblock::with_capacity(PIECE, file);
        let mut buffer = vec![0u8; 256 * 1024];
        let mut sent = 0u64;
        while sent < length {
            let n = reader.read(&mut buffer).await.map_err(fail)?;
            if n == 0 {
                break;
            }
            stream
                .write_all(buffer.get(..n).unwrap_or_default())
                .await
                .map_err(fail)?;
            sent += n as u64;
            deadline.extend(IDLE);
        }
    }
    stream.flush().await.map_err(fail)?;
    stream.close().await.map_err(fail)
}
