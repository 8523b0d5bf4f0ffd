//! Frames: a u32 big-endian length, then that many bytes. The length is
//! checked against a cap before anything is allocated. (Reading and writing
//! them on a socket is the transport's: `rpc::frame`.)

use std::io;

/// The largest frame accepted before authentication completes.
pub const MAX_HANDSHAKE_FRAME: usize = 16 * 1024;
/// The largest frame accepted on an authenticated session.
pub const MAX_SESSION_FRAME: usize = 1024 * 1024;

/// Why a frame was refused.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer announced more than the cap (0xFFFFFFFF included).
    #[error("frame of {len} bytes exceeds the {cap}-byte limit")]
    TooLarge {
        /// Announced length.
        len: u64,
        /// The cap in force.
        cap: usize,
    },
    /// A zero-length frame carries nothing and is not part of the protocol.
    #[error("empty frame")]
    Empty,
    /// The connection ended or failed.
    #[error("connection: {0}")]
    Io(#[from] io::Error),
}

/// Checks a frame header; returns the body length.
pub fn body_length(header: [u8; 4], cap: usize) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header);
    if len == 0 {
        return Err(FrameError::Empty);
    }
    match usize::try_from(len) {
        Ok(len) if len <= cap => Ok(len),
        _ => Err(FrameError::TooLarge {
            len: u64::from(len),
            cap,
        }),
    }
}
