//! The authenticated session: ChaCha20-Poly1305 (RFC 8439) with one key per
//! direction and an implicit counter as nonce. The counter is never sent:
//! each side expects exactly the next one, so a replayed, reordered,
//! dropped or injected frame fails authentication and ends the session.

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use zeroize::Zeroizing;

/// Sealing or opening failed; the session must end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The frame was not sealed by the peer for this position in this session.
    #[error("frame failed authentication (tampered, replayed, reordered or from another session)")]
    Forged,
    /// 2^64 frames in one direction; never reached in practice.
    #[error("counter exhausted")]
    Exhausted,
}

/// One direction of a session.
pub struct Channel {
    cipher: ChaCha20Poly1305,
    counter: u64,
    exhausted: bool,
}

impl Channel {
    /// A channel keyed with `key`, starting at counter 0.
    pub fn new(key: &Zeroizing<[u8; 32]>) -> Self {
        Self {
            cipher: ChaCha20Poly1305::new(Key::from_slice(key.as_slice())),
            counter: 0,
            exhausted: false,
        }
    }

    /// The counter the next frame will use.
    pub fn counter(&self) -> u64 {
        self.counter
    }

    fn next_nonce(&mut self) -> Result<Nonce, SessionError> {
        if self.exhausted {
            return Err(SessionError::Exhausted);
        }
        let mut nonce = [0u8; 12];
        if let Some(tail) = nonce.get_mut(4..) {
            tail.copy_from_slice(&self.counter.to_be_bytes());
        }
        match self.counter.checked_add(1) {
            Some(next) => self.counter = next,
            None => self.exhausted = true,
        }
        Ok(*Nonce::from_slice(&nonce))
    }

    /// Encrypts the next outgoing frame.
    pub fn seal(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, SessionError> {
        let nonce = self.next_nonce()?;
        self.cipher
            .encrypt(&nonce, plaintext)
            .map_err(|_| SessionError::Forged)
    }

    /// Decrypts the next incoming frame; any failure is fatal.
    pub fn open(&mut self, ciphertext: &[u8]) -> Result<Vec<u8>, SessionError> {
        let nonce = self.next_nonce()?;
        self.cipher
            .decrypt(&nonce, ciphertext)
            .map_err(|_| SessionError::Forged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Channel, Channel) {
        let key = Zeroizing::new([7u8; 32]);
        (Channel::new(&key), Channel::new(&key))
    }

    #[test]
    fn frames_open_in_order() {
        let (mut tx, mut rx) = pair();
        for n in 0..5u8 {
            let sealed = tx.seal(&[n; 10]).unwrap();
            assert_eq!(rx.open(&sealed).unwrap(), [n; 10]);
        }
    }

    #[test]
    fn replayed_frame_is_rejected() {
        let (mut tx, mut rx) = pair();
        let first = tx.seal(b"start").unwrap();
        rx.open(&first).unwrap();
        assert_eq!(rx.open(&first), Err(SessionError::Forged));
    }

    #[test]
    fn reordered_frames_are_rejected() {
        let (mut tx, mut rx) = pair();
        let _first = tx.seal(b"one").unwrap();
        let second = tx.seal(b"two").unwrap();
        assert_eq!(rx.open(&second), Err(SessionError::Forged));
    }

    #[test]
    fn flipped_bit_is_rejected() {
        let (mut tx, mut rx) = pair();
        let mut sealed = tx.seal(b"stop web").unwrap();
        sealed[0] ^= 1;
        assert_eq!(rx.open(&sealed), Err(SessionError::Forged));
    }
}
