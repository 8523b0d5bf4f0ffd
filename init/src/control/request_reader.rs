//! Request lines off the control socket, in a buffer spore wipes.
//!
//! A request may carry a secret's value (`secret.set`). A `BufReader`
//! would keep the last request's bytes in a buffer it frees unwiped when
//! the connection ends, and a growing `Vec` leaves copies behind in every
//! allocation it outgrows. Here the buffer is wiped when it is dropped and
//! when it grows (the old one is wiped before it is freed), and every byte
//! a consumed line leaves behind is zeroed at once.

use std::io;

use smol::io::AsyncReadExt;
use smol::net::unix::UnixStream;
use zeroize::{Zeroize, Zeroizing};

/// First size of the buffer.
const FIRST: usize = 4096;

/// What the next read gave.
pub enum Next {
    /// A line, with its newline when it had one (the last before the end
    /// may lack it); wiped when dropped.
    Line(Zeroizing<Vec<u8>>),
    /// More than the limit arrived without a newline.
    TooLarge,
    /// The caller closed its side.
    End,
}

/// Reads lines of at most `limit` bytes from a stream.
pub struct RequestReader {
    stream: UnixStream,
    buffer: Zeroizing<Vec<u8>>,
    filled: usize,
    limit: usize,
}

impl RequestReader {
    /// A reader of `stream` taking lines up to `limit` bytes.
    pub fn new(stream: UnixStream, limit: usize) -> Self {
        Self {
            stream,
            buffer: Zeroizing::new(vec![0; FIRST]),
            filled: 0,
            limit,
        }
    }

    /// The next line (see [`Next`]).
    pub async fn next(&mut self) -> io::Result<Next> {
        loop {
            let held = self.buffer.get(..self.filled).unwrap_or_default();
            if let Some(end) = held.iter().position(|&b| b == b'\n') {
                return Ok(Next::Line(self.take(end + 1)));
            }
            if self.filled > self.limit {
                return Ok(Next::TooLarge);
            }
            if self.read_more().await? == 0 {
                return Ok(if self.filled == 0 {
                    Next::End
                } else {
                    Next::Line(self.take(self.filled))
                });
            }
        }
    }

    /// Resolves once the caller has closed its side; bytes it sends first
    /// are kept for [`RequestReader::next`] (never taken), and while they
    /// wait there the caller is there, so this no longer resolves.
    pub async fn closed(&mut self) {
        if self.filled > 0 {
            return std::future::pending().await;
        }
        match self.read_more().await {
            Ok(0) | Err(_) => {}
            Ok(_) => std::future::pending().await,
        }
    }

    /// Reads once into the free end of the buffer, growing it first when
    /// it is full (up to one byte past the limit, so too much is seen).
    async fn read_more(&mut self) -> io::Result<usize> {
        if self.filled == self.buffer.len() {
            let size = (self.buffer.len() * 2)
                .min(self.limit + 1)
                .max(self.filled + 1);
            let mut grown = Zeroizing::new(vec![0; size]);
            if let (Some(to), Some(from)) =
                (grown.get_mut(..self.filled), self.buffer.get(..self.filled))
            {
                to.copy_from_slice(from);
            }
            // The old buffer is wiped as it is dropped here.
            self.buffer = grown;
        }
        let free = self.buffer.get_mut(self.filled..).unwrap_or_default();
        let n = self.stream.read(free).await?;
        self.filled += n;
        Ok(n)
    }

    /// The first `n` bytes as a line of their own; the rest moves to the
    /// front and what it leaves behind is zeroed.
    fn take(&mut self, n: usize) -> Zeroizing<Vec<u8>> {
        let line = Zeroizing::new(self.buffer.get(..n).unwrap_or_default().to_vec());
        self.buffer.copy_within(n..self.filled, 0);
        let rest = self.filled - n;
        if let Some(stale) = self.buffer.get_mut(rest..self.filled) {
            stale.zeroize();
        }
        self.filled = rest;
        line
    }
}
