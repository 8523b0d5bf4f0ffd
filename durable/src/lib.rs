//! Files and bytes that must survive a crash or must not survive their use:
//! atomic replacement (temp file, fsync, rename, fsync the directory) and
//! durable removal ([`atomic`]), and buffers wiped when dropped ([`wipe`]).
//!
//! A leaf: it depends on no crate of this workspace, and the runtime, the
//! node API, the beacon and the image builder all use it.

pub mod atomic;
pub mod wipe;
