//! The authenticated session: ChaCha20-Poly1305 (RFC 8439) with one key per
//! direction and an implicit counter as nonce. The counter is never sent:
//! each side expects exactly the next one, so a replayed, reordered,
//! dropped or injected frame fails authentication and ends the session.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
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

/// One direction of a session. The cipher is ring's ChaCha20-Poly1305
/// (its assembly runs at several times the speed of a portable one, and
/// every artifact byte is sealed and opened); the bytes are RFC 8439's, as
/// a test checks against RustCrypto's implementation.
pub struct Channel {
    /// None only if ring refused a 32-byte key, which it does not: then
    /// every frame fails.
    cipher: Option<LessSafeKey>,
    counter: u64,
    exhausted: bool,
}

impl Channel {
    /// A channel keyed with `key`, starting at counter 0.
    pub fn new(key: &Zeroizing<[u8; 32]>) -> Self {
        Self {
            cipher: UnboundKey::new(&CHACHA20_POLY1305, key.as_slice())
                .ok()
                .map(LessSafeKey::new),
            counter: 0,
            exhausted: false,
        }
    }

    /// The counter the next frame will use.
    pub fn counter(&self) -> u64 {
        self.counter
    }

    fn next_nonce(&mut self) -> Result<[u8; 12], SessionError> {
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
        Ok(nonce)
    }

    /// Encrypts the next outgoing frame.
    pub fn seal(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, SessionError> {
        let nonce = Nonce::assume_unique_for_key(self.next_nonce()?);
        let cipher = self.cipher.as_ref().ok_or(SessionError::Forged)?;
        let mut sealed = Vec::with_capacity(plaintext.len() + CHACHA20_POLY1305.tag_len());
        sealed.extend_from_slice(plaintext);
        cipher
            .seal_in_place_append_tag(nonce, Aad::empty(), &mut sealed)
            .map_err(|_| SessionError::Forged)?;
        Ok(sealed)
    }

    /// Decrypts the next incoming frame; any failure is fatal.
    pub fn open(&mut self, ciphertext: &[u8]) -> Result<Vec<u8>, SessionError> {
        let nonce = Nonce::assume_unique_for_key(self.next_nonce()?);
        let cipher = self.cipher.as_ref().ok_or(SessionError::Forged)?;
        let mut opened = ciphertext.to_vec();
        let len = cipher
            .open_in_place(nonce, Aad::empty(), &mut opened)
            .map_err(|_| SessionError::Forged)?
            .len();
        opened.truncate(len);
        Ok(opened)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_rfc_8439_as_rustcrypto_seals_them() {
        use chacha20poly1305::aead::{Aead, KeyInit};
        use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
        let key = Zeroizing::new([0x42u8; 32]);
        let theirs = ChaCha20Poly1305::new(Key::from_slice(key.as_slice()));
        let mut ours = Channel::new(&key);
        let mut reader = Channel::new(&key);
        for (counter, len) in [0u64, 1, 2, 3].into_iter().zip([0usize, 1, 64, 100_000]) {
            let plaintext: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let mut nonce = [0u8; 12];
            nonce[4..].copy_from_slice(&counter.to_be_bytes());
            let expected = theirs
                .encrypt(Nonce::from_slice(&nonce), plaintext.as_slice())
                .unwrap();
            assert_eq!(ours.seal(&plaintext).unwrap(), expected, "frame {counter}");
            assert_eq!(reader.open(&expected).unwrap(), plaintext);
        }
    }

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
