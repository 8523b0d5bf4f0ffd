//! Frames: a u32 big-endian length, then that many bytes. The length is
//! checked against a cap before anything is allocated.

use std::io;

use smol::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub use proto::frame::{body_length, FrameError, MAX_HANDSHAKE_FRAME, MAX_SESSION_FRAME};

/// Reads one frame of at most `cap` bytes.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    cap: usize,
) -> Result<Vec<u8>, FrameError> {
    let mut header = [0u8; 4];
    reader.read_exact(&mut header).await?;
    let len = body_length(header, cap)?;
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).await?;
    Ok(body)
}

/// Writes one frame.
pub async fn write_frame<W: AsyncWrite + Unpin>(writer: &mut W, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    let mut frame = Vec::with_capacity(body.len() + 4);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(body);
    writer.write_all(&frame).await?;
    writer.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_over_the_cap_are_refused_before_allocating() {
        assert!(matches!(
            body_length([0xff; 4], MAX_SESSION_FRAME),
            Err(FrameError::TooLarge {
                len: 0xffff_ffff,
                ..
            })
        ));
        assert!(matches!(
            body_length(16385u32.to_be_bytes(), MAX_HANDSHAKE_FRAME),
            Err(FrameError::TooLarge { .. })
        ));
        assert_eq!(
            body_length(16384u32.to_be_bytes(), MAX_HANDSHAKE_FRAME).unwrap(),
            16384
        );
        assert!(matches!(
            body_length([0; 4], MAX_HANDSHAKE_FRAME),
            Err(FrameError::Empty)
        ));
    }

    #[test]
    fn frames_round_trip_and_truncation_is_an_error() {
        smol::block_on(async {
            let mut buffer = Vec::new();
            write_frame(&mut buffer, b"hello").await.unwrap();
            assert_eq!(&buffer[..4], &[0, 0, 0, 5]);
            let mut reader = &buffer[..];
            assert_eq!(read_frame(&mut reader, 100).await.unwrap(), b"hello");
            let mut truncated = &buffer[..7];
            assert!(matches!(
                read_frame(&mut truncated, 100).await,
                Err(FrameError::Io(_))
            ));
        });
    }
}
