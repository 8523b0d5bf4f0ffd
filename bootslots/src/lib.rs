//! A/B boot slots for in-place updates that never brick a node: a new
//! unified kernel image is written to the slot not in use, booted once
//! with UEFI `BootNext`, and confirmed (made the default) only when spore
//! on it says the node is healthy; anything else — a kernel that panics, a
//! spore that never starts, checks that do not pass in time — lands the
//! node back on the old slot. See README's "Updating nodes".

pub mod efivar;
pub mod error;
pub mod gpt;
pub mod image;
pub mod loadopt;
pub mod record;
pub mod slots;

pub use error::SlotError;
pub use record::{Boot, Outcome, Record, Slot, Trial};
pub use slots::{Slots, Staged};
