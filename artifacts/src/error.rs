//! Why the store refused: each says what a person needs to act.

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// Not a SHA-256 in hex.
    #[error("not a SHA-256: `{0}` (expected 64 hex digits)")]
    BadDigest(String),
    /// A chunk that does not start where the held bytes end.
    #[error("this chunk starts at byte {offset}, but the node holds {held} bytes of it: resume at {held}")]
    Offset {
        /// Where the chunk starts.
        offset: u64,
        /// Bytes held.
        held: u64,
    },
    /// A chunk that runs past the declared size.
    #[error("a chunk ending at byte {end} runs past the artifact's {size} bytes")]
    PastEnd {
        /// Where it ends.
        end: u64,
        /// The declared size.
        size: u64,
    },
    /// The digest is held with another size.
    #[error("sha256:{digest} is held with {held} bytes, not {size}")]
    OtherSize {
        /// The artifact.
        digest: String,
        /// Its size on the node.
        held: u64,
        /// The size declared.
        size: u64,
    },
    /// Storing it would pass the quota.
    #[error("storing {size} bytes would exceed the artifact quota ({used} of {quota} bytes in use); remove artifacts or raise [artifacts] max_bytes; nothing was stored")]
    Quota {
        /// The artifact's size.
        size: u64,
        /// Bytes the store holds or has reserved for uploads under way.
        used: u64,
        /// The quota.
        quota: u64,
    },
    /// The filesystem has no room.
    #[error("the disk is full: {needed} more bytes needed, {free} free; nothing was stored")]
    Full {
        /// Bytes still to write.
        needed: u64,
        /// Bytes free for the store.
        free: u64,
    },
    /// The bytes received hash to another digest.
    #[error("the bytes received hash to sha256:{got}, not sha256:{expected}; nothing was stored")]
    Mismatch {
        /// The name it was sent under.
        expected: String,
        /// What the bytes hash to.
        got: String,
    },
    /// A file operation failed.
    #[error("{what}: {error}")]
    Io {
        /// What was being done, to which path.
        what: String,
        /// Why it failed.
        error: std::io::Error,
    },
}

impl ArtifactError {
    /// An I/O failure while doing `what`; ENOSPC becomes [`ArtifactError::Full`].
    pub(crate) fn io(what: impl Into<String>, error: std::io::Error, needed: u64) -> Self {
        if error.raw_os_error() == Some(nix::libc::ENOSPC) {
            return ArtifactError::Full { needed, free: 0 };
        }
        ArtifactError::Io {
            what: what.into(),
            error,
        }
    }
}
