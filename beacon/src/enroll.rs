//! Who the beacon lists. A registration is checked in this order: its
//! hostname (RFC 1123, before anything is logged), the node key's
//! signature, the timestamp (within [`MAX_SKEW`], newer than the stored
//! one). Then:
//!
//! - a known hostname with the same node key: updated (a heartbeat; no
//!   credential needed, so nodes stay listed when an enrollment CA is
//!   rotated out or a credential revoked);
//! - a new hostname: listed if enrolled (a valid credential, or an
//!   `--open` beacon); else pending with `--approve` (202), else 403;
//! - a known hostname with another node key (a rekey): replaced only with
//!   `--allow-rekey` and an enrolled new key; else pending with
//!   `--approve`, else 409.
//!
//! Approvals and removals are signed operator orders ([`super::admin`]).

use std::net::SocketAddr;

use serde_json::json;

use super::admin::{Order, MAX_NONCES};
use super::store::{Expect, Record};
use super::{answer, error, now, Answer, Beacon};
use rpc::display::printable;
use rpc::registration::Registration;

/// Registrations may be this far from the beacon's clock, either way.
pub const MAX_SKEW: u64 = 300;

impl Beacon {
    pub(crate) async fn register(&self, body: &[u8], peer: SocketAddr) -> Answer {
        let registration: Registration = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => return error(400, format!("not a registration: {e}")),
        };
        // The name first: nothing else about a registration is looked at,
        // logged or stored while its name could carry a newline or an
        // escape sequence.
        if let Err(e) = rpc::hostname::check(&registration.hostname) {
            self.refused("bad hostnames", || {
                format!(
                    "beacon: refused a registration from {peer}: bad hostname `{}`: {e}",
                    printable(&registration.hostname)
                )
            });
            return error(400, format!("bad hostname: {e}"));
        }
        let hostname = registration.hostname.clone();
        let key = match registration.verify() {
            Ok(key) => key,
            Err(e) => {
                self.refused("bad signatures", || {
                    format!("beacon: refused {hostname} from {peer}: {e}")
                });
                return error(403, format!("refused: {e}"));
            }
        };
        let clock = now();
        if registration.timestamp + MAX_SKEW < clock || registration.timestamp > clock + MAX_SKEW {
            return error(
                403,
                format!(
                    "refused: timestamp {} is more than {MAX_SKEW} s from the beacon's clock",
                    registration.timestamp
                ),
            );
        }
        let existing = match self.store.node(&hostname).await {
            Ok(existing) => existing,
            Err(e) => return error(500, format!("storage: {e}")),
        };
        let fingerprint = rpc::nodekey::fingerprint(&key);
        let record = |enrolled_by: String, first_seen: u64| Record {
            registration: registration.clone(),
            first_seen,
            last_seen: clock,
            source: peer.ip().to_string(),
            source_prefix: rpc::admission::source_of(peer.ip()).to_string(),
            enrolled_by,
            fingerprint: fingerprint.clone(),
            held_until: 0,
        };
        if let Some(old) = &existing {
            if registration.timestamp <= old.registration.timestamp {
                return error(
                    409,
                    "refused: stale or replayed registration (timestamp not newer than the stored one)",
                );
            }
            let old_key =
                rpc::nodekey::parse_openssh_public(&old.registration.hero_proc_auth_pubkey);
            if old_key == Some(key) {
                return self
                    .store_node(
                        record(old.enrolled_by.clone(), old.first_seen),
                        Expect::from_read(Some(old)),
                    )
                    .await;
            }
        }
        let policy = &self.settings.policy;
        let enrolled = if policy.open {
            Ok("open".to_owned())
        } else {
            match &policy.trust {
                Some(trust) => trust
                    .verify(registration.enrollment.as_ref(), &hostname, &key, clock)
                    .map(|id| format!("credential {}", printable(&id)))
                    .map_err(|e| e.to_string()),
                None => Err("this beacon takes no enrollment credentials".to_owned()),
            }
        };
        let rekey = existing.is_some();
        match enrolled {
            Ok(by) if !rekey || self.settings.allow_rekey => {
                if rekey {
                    super::log(format_args!(
                        "beacon: {hostname} rekeyed to {fingerprint} from {peer} ({by})"
                    ));
                } else {
                    super::log(format_args!(
                        "beacon: enrolled {hostname} ({fingerprint}) from {peer} ({by})"
                    ));
                }
                let expect = Expect::from_read(existing.as_ref());
                self.store_node(record(by, clock), expect).await
            }
            outcome if policy.approve => {
                let first_seen = match self.store.pending_entry(&hostname, &fingerprint).await {
                    Ok(Some(old)) if registration.timestamp <= old.registration.timestamp => {
                        return error(409, "refused: stale or replayed registration");
                    }
                    Ok(Some(old)) => old.first_seen,
                    Ok(None) => {
                        self.refused("registrations left pending", || {
                            format!(
                                "beacon: {hostname} ({fingerprint}) from {peer} waits for approval{}: {}",
                                if rekey { " (a new key for a listed name)" } else { "" },
                                outcome.as_ref().err().map_or("a rekey", String::as_str)
                            )
                        });
                        clock
                    }
                    Err(e) => return error(500, format!("storage: {e}")),
                };
                match self
                    .store
                    .put_pending(record(String::new(), first_seen), self.settings.max_pending)
                    .await
                {
                    Ok(evicted) => {
                        if evicted {
                            self.refused("pending registrations evicted", || {
                                format!(
                                    "beacon: {} registrations pending: the oldest made room",
                                    self.settings.max_pending
                                )
                            });
                        }
                        answer(
                            202,
                            json!({ "accepted": false, "pending": true, "hostname": hostname,
                                    "message": "waiting for an operator's approval" }),
                        )
                    }
                    Err(e) => error(500, format!("storage: {e}")),
                }
            }
            Ok(_) => {
                self.refused("rekeys", || {
                    format!("beacon: refused {hostname} from {peer}: node key changed")
                });
                error(409, "refused: this hostname is registered with another node key (start the beacon with --allow-rekey or --approve to accept)")
            }
            Err(reason) if rekey => {
                self.refused("rekeys", || {
                    format!("beacon: refused {hostname} from {peer}: node key changed and {reason}")
                });
                error(
                    409,
                    "refused: this hostname is registered with another node key",
                )
            }
            Err(reason) => {
                self.refused("registrations not enrolled", || {
                    format!("beacon: refused {hostname} ({fingerprint}) from {peer}: not enrolled: {reason}")
                });
                // Little for the peer; the reason is in the beacon's log.
                error(403, "refused: not enrolled in this fleet")
            }
        }
    }

    /// Stores `record` as enrolled if the node is still as `expect` says.
    async fn store_node(&self, record: Record, expect: Expect) -> Answer {
        let hostname = record.registration.hostname.clone();
        match self.store.put_node(record, expect).await {
            Ok(true) => answer(200, json!({ "accepted": true, "hostname": hostname })),
            Ok(false) => changed_meanwhile(),
            Err(e) => error(500, format!("storage: {e}")),
        }
    }

    pub(crate) async fn order(&self, body: &[u8], peer: SocketAddr) -> Answer {
        let order: Order = match serde_json::from_slice(body) {
            Ok(order) => order,
            Err(e) => return error(400, format!("not an order: {e}")),
        };
        if !matches!(order.action.as_str(), "approve" | "hold" | "remove") {
            return error(
                400,
                "an admin order is approve, hold or remove (publish goes with PUT /api/v1/artifacts/SHA256)",
            );
        }
        if let Err(e) = rpc::hostname::check(&order.hostname) {
            return error(400, format!("bad hostname: {e}"));
        }
        let clock = now();
        let operator = match self.authorized(&order, peer, clock).await {
            Ok(operator) => operator,
            Err(refusal) => return refusal,
        };
        let who = format!("{} {}", operator.fingerprint, printable(&operator.comment));
        let hostname = order.hostname.as_str();
        match order.action.as_str() {
            "approve" => match self.store.pending_entry(hostname, &order.node_key).await {
                Ok(Some(mut record)) => {
                    let previous = match self.store.node(hostname).await {
                        Ok(previous) => previous,
                        Err(e) => return error(500, format!("storage: {e}")),
                    };
                    let expect = Expect::from_read(previous.as_ref());
                    record.enrolled_by = format!("approved by {}", operator.fingerprint);
                    if let Some(previous) = previous {
                        if previous.fingerprint == record.fingerprint {
                            record.first_seen = previous.first_seen;
                        }
                    }
                    match self.store.put_node(record.clone(), expect).await {
                        Ok(false) => changed_meanwhile(),
                        Ok(true) => {
                            super::log(format_args!(
                                "beacon: {who} approved {hostname} ({}) from {peer}",
                                record.fingerprint
                            ));
                            answer(
                                200,
                                json!({ "approved": hostname, "node_key": record.fingerprint }),
                            )
                        }
                        Err(e) => error(500, format!("storage: {e}")),
                    }
                }
                Ok(None) => error(
                    404,
                    format!(
                        "no pending registration of {hostname} with key {}",
                        printable(&order.node_key)
                    ),
                ),
                Err(e) => error(500, format!("storage: {e}")),
            },
            "hold" => {
                let until = clock + super::store::HOLD_SECS;
                match self.store.hold(hostname, &order.node_key, until).await {
                    Ok(0) => error(404, format!("no pending registration of {hostname}")),
                    Ok(n) => {
                        super::log(format_args!(
                            "beacon: {who} holds {n} pending entries of {hostname} until {until} from {peer}"
                        ));
                        answer(
                            200,
                            json!({ "held": hostname, "entries": n, "until": until }),
                        )
                    }
                    Err(e) => error(500, format!("storage: {e}")),
                }
            }
            "remove" => match self.store.remove(hostname).await {
                Ok(0) => error(404, format!("no node {hostname}")),
                Ok(n) => {
                    super::log(format_args!(
                        "beacon: {who} removed {hostname} ({n} entries) from {peer}"
                    ));
                    answer(200, json!({ "removed": hostname, "entries": n }))
                }
                Err(e) => error(500, format!("storage: {e}")),
            },
            _ => error(400, "unknown action"),
        }
    }

    /// Checks `order` (signature, admin operator, freshness) and uses up
    /// its nonce in the store every replica shares; a refusal is counted in
    /// the log and answered with little detail.
    pub(crate) async fn authorized(
        &self,
        order: &Order,
        peer: SocketAddr,
        clock: u64,
    ) -> Result<rpc::authorized::Operator, Answer> {
        let checked = match self.operators.try_borrow_mut() {
            Ok(mut operators) => order.check(operators.as_mut(), clock, &mut |line| {
                super::log(format_args!("beacon: {line}"))
            }),
            Err(_) => return Err(error(503, "busy")),
        };
        // The nonce last, in the store every replica shares: only an order
        // that would be obeyed uses one up.
        let checked = match checked {
            Ok(operator) => match self
                .store
                .take_nonce(&order.nonce, order.nonce_expires(), clock, MAX_NONCES)
                .await
            {
                Ok(true) => Ok(operator),
                Ok(false) => Err(super::admin::OrderError::Replayed),
                Err(e) => return Err(error(500, format!("storage: {e}"))),
            },
            Err(e) => Err(e),
        };
        checked.map_err(|e| {
            self.refused("orders", || {
                format!(
                    "beacon: refused an order to {} {} from {peer}: {e}",
                    printable(&order.action),
                    if order.action == "publish" {
                        format!("sha256:{}", printable(&order.sha256))
                    } else {
                        order.hostname.clone()
                    }
                )
            });
            error(403, "refused")
        })
    }
}

/// A compare-and-set that lost: another registration or order (perhaps at
/// another replica) changed the node between this one's read and write.
fn changed_meanwhile() -> Answer {
    error(
        409,
        "refused: the node changed meanwhile (another registration of this name); try again",
    )
}
