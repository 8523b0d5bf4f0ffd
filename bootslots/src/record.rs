//! What the node remembers about its slots, on the state disk, and the
//! decisions taken from it: which slot is confirmed, which one is on trial,
//! and how the last update ended. The decisions are pure (no I/O): the
//! caller reads the record, asks, writes the record back, then acts.

use serde::{Deserialize, Serialize};

/// One of the two boot slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    /// `\EFI\spore\a.efi`.
    A,
    /// `\EFI\spore\b.efi`.
    B,
}

impl Slot {
    /// The other one.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    /// `a` or `b`.
    pub fn letter(self) -> &'static str {
        match self {
            Slot::A => "a",
            Slot::B => "b",
        }
    }

    /// Its file on the ESP, relative, with `/`.
    pub fn file(self) -> &'static str {
        match self {
            Slot::A => "EFI/spore/a.efi",
            Slot::B => "EFI/spore/b.efi",
        }
    }

    /// Its file as a UEFI device path names it.
    pub fn efi_path(self) -> &'static str {
        match self {
            Slot::A => "\\EFI\\spore\\a.efi",
            Slot::B => "\\EFI\\spore\\b.efi",
        }
    }

    /// Its boot entry's description.
    pub fn description(self) -> &'static str {
        match self {
            Slot::A => "spore A",
            Slot::B => "spore B",
        }
    }
}

/// An update being tried: written to `slot`, booted once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trial {
    /// The slot written.
    pub slot: Slot,
    /// The SHA-256 of the image written there.
    pub sha256: String,
    /// The spore version that staged it.
    pub from_version: String,
    /// The SHA-256 of the image it replaces, when known.
    pub from_sha256: Option<String>,
    /// When it was staged (Unix seconds).
    pub staged_at: u64,
    /// Whether spore on the new slot has started (so a later boot of the
    /// old one knows how far the new one got).
    pub booted: bool,
}

/// How an update ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Result {
    /// The new slot passed its checks and is the one booted from now on.
    Confirmed,
    /// The old slot is back.
    Reverted,
}

/// The last update's end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// Confirmed or reverted.
    pub result: Result,
    /// The slot that was tried.
    pub slot: Slot,
    /// The image tried.
    pub sha256: String,
    /// The image it was to replace, when known.
    pub from_sha256: Option<String>,
    /// spore's version before.
    pub from_version: String,
    /// spore's version on the new slot, when it got that far.
    pub to_version: Option<String>,
    /// Why it reverted, or what was checked to confirm it.
    pub reason: String,
    /// When (Unix seconds).
    pub at: u64,
}

/// The record, as kept on the state disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The slot the firmware boots by default and the fallback path
    /// (`\EFI\BOOT\BOOTX64.EFI`) holds a copy of.
    pub confirmed: Slot,
    /// The SHA-256 of the confirmed image, when known.
    pub confirmed_sha256: Option<String>,
    /// The update on trial, if any.
    pub trial: Option<Trial>,
    /// How the last update ended.
    pub last: Option<Outcome>,
    /// A confirmation whose firmware and fallback steps (BootOrder, the
    /// copy to the fallback path) are still to be done or redone.
    pub settling: bool,
}

impl Default for Record {
    /// A node that never updated: slot A, as the image was built.
    fn default() -> Record {
        Record {
            confirmed: Slot::A,
            confirmed_sha256: None,
            trial: None,
            last: None,
            settling: false,
        }
    }
}

/// What this boot is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// An ordinary boot of the confirmed slot.
    Normal,
    /// The first boot of a trial slot: confirm it once its checks pass,
    /// revert otherwise.
    Trial(Trial),
    /// A trial slot booted again without being confirmed: go back now.
    RevertNow(String),
}

impl Record {
    /// Decides what the boot of `booted`, running spore `version`, is, and
    /// updates the record for it (to be written back before acting). A
    /// trial that the firmware did not come back to has ended: it is
    /// recorded as reverted, with how far it got.
    pub fn on_boot(&mut self, booted: Slot, version: &str, now: u64) -> Boot {
        let Some(trial) = self.trial.clone() else {
            return Boot::Normal;
        };
        if booted == trial.slot {
            if trial.booted {
                let reason = "the new slot started again without having been confirmed";
                self.end(Result::Reverted, Some(version.to_owned()), reason, now);
                return Boot::RevertNow(reason.to_owned());
            }
            let mut started = trial;
            started.booted = true;
            self.trial = Some(started.clone());
            return Boot::Trial(started);
        }
        let reason = if trial.booted {
            "the new slot started but was not confirmed (its checks did not pass, or the node reset first); the firmware booted the old slot"
        } else {
            "the new slot never started spore (the firmware or its kernel failed); the firmware booted the old slot"
        };
        self.end(Result::Reverted, None, reason, now);
        Boot::Normal
    }

    /// The trial passed: its slot becomes the confirmed one, and the
    /// firmware and fallback steps are due (`settling`).
    pub fn confirm(&mut self, version: &str, reason: &str, now: u64) {
        if let Some(trial) = self.trial.clone() {
            self.end(Result::Confirmed, Some(version.to_owned()), reason, now);
            self.confirmed = trial.slot;
            self.confirmed_sha256 = Some(trial.sha256);
            self.settling = true;
        }
    }

    /// The trial failed on the new slot itself: recorded before the reboot
    /// that brings the old slot back.
    pub fn revert(&mut self, version: &str, reason: &str, now: u64) {
        self.end(Result::Reverted, Some(version.to_owned()), reason, now);
    }

    fn end(&mut self, result: Result, to_version: Option<String>, reason: &str, now: u64) {
        if let Some(trial) = self.trial.take() {
            self.last = Some(Outcome {
                result,
                slot: trial.slot,
                sha256: trial.sha256,
                from_sha256: trial.from_sha256,
                from_version: trial.from_version,
                to_version,
                reason: reason.to_owned(),
                at: now,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn staged() -> Record {
        Record {
            trial: Some(Trial {
                slot: Slot::B,
                sha256: "new".into(),
                from_version: "0.1.0".into(),
                from_sha256: Some("old".into()),
                staged_at: 10,
                booted: false,
            }),
            ..Record::default()
        }
    }

    #[test]
    fn the_first_boot_of_the_new_slot_is_its_trial_and_a_confirm_makes_it_the_default() {
        let mut record = staged();
        let Boot::Trial(trial) = record.on_boot(Slot::B, "0.2.0", 20) else {
            panic!("a trial");
        };
        assert!(trial.booted && record.trial.as_ref().unwrap().booted);
        record.confirm("0.2.0", "mycelium and call-home ready", 30);
        assert_eq!(record.confirmed, Slot::B);
        assert_eq!(record.confirmed_sha256.as_deref(), Some("new"));
        assert!(record.settling && record.trial.is_none());
        let last = record.last.unwrap();
        assert_eq!(
            (last.result, last.to_version.as_deref()),
            (Result::Confirmed, Some("0.2.0"))
        );
    }

    #[test]
    fn a_new_slot_that_never_started_spore_is_reverted_when_the_old_one_boots() {
        let mut record = staged();
        assert_eq!(record.on_boot(Slot::A, "0.1.0", 20), Boot::Normal);
        let last = record.last.unwrap();
        assert_eq!(last.result, Result::Reverted);
        assert!(
            last.reason.contains("never started spore"),
            "{}",
            last.reason
        );
        assert_eq!((record.confirmed, record.trial), (Slot::A, None));
    }

    #[test]
    fn a_new_slot_that_started_but_never_confirmed_says_so_from_the_old_one() {
        let mut record = staged();
        record.on_boot(Slot::B, "0.2.0", 20);
        assert_eq!(record.on_boot(Slot::A, "0.1.0", 40), Boot::Normal);
        assert!(record
            .last
            .unwrap()
            .reason
            .contains("started but was not confirmed"));
    }

    #[test]
    fn a_trial_slot_booted_twice_is_reverted_at_once() {
        let mut record = staged();
        record.on_boot(Slot::B, "0.2.0", 20);
        assert!(matches!(
            record.on_boot(Slot::B, "0.2.0", 40),
            Boot::RevertNow(_)
        ));
        assert_eq!(record.last.unwrap().result, Result::Reverted);
        assert_eq!(record.confirmed, Slot::A);
    }

    #[test]
    fn a_revert_on_the_new_slot_keeps_the_old_one_confirmed() {
        let mut record = staged();
        record.on_boot(Slot::B, "0.2.0", 20);
        record.revert("0.2.0", "mycelium not ready within 300 s", 50);
        assert_eq!((record.confirmed, record.trial.is_none()), (Slot::A, true));
        assert_eq!(
            record.last.unwrap().reason,
            "mycelium not ready within 300 s"
        );
    }

    #[test]
    fn no_trial_is_a_normal_boot() {
        let mut record = Record::default();
        assert_eq!(record.on_boot(Slot::A, "0.1.0", 1), Boot::Normal);
        assert_eq!(record, Record::default());
    }
}
