//! Daily byte budgets of metered links (WireGuard peers): bytes sent per day, kept in the store's state so a
//! restart does not hand out a fresh budget.
//!
//! A day is 86 400 000 ms of the node's time base. DTN time starts at 2000-01-01 00:00 UTC, so on a node with
//! a clock days turn at UTC midnight; a node without one counts days from its own time base.

use std::collections::BTreeMap;

use dtn_core::bpv7::DtnTime;
use dtn_core::store::WriteOp;

const DAY_MS: u64 = 86_400_000;

/// The day `now` falls in.
pub(crate) fn day_of(now: DtnTime) -> u64 {
    now.0 / DAY_MS
}

/// When the day after `now` starts.
pub(crate) fn next_day(now: DtnTime) -> DtnTime {
    DtnTime((day_of(now) + 1).saturating_mul(DAY_MS))
}

/// The budget a session is counted against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LinkBudget {
    /// What the count is kept under (the peer's WireGuard key).
    pub name: String,
    /// Bytes per day.
    pub per_day: u64,
}

/// Bytes sent on one budget in one day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Usage {
    day: u64,
    used: u64,
}

/// The counts of every budget seen since the start, loaded from the store on first use.
#[derive(Debug, Default)]
pub(crate) struct Budgets {
    usage: BTreeMap<String, Usage>,
    /// Counts changed since the last [`Budgets::take_writes`].
    dirty: Vec<String>,
}

fn key(name: &str) -> Vec<u8> {
    format!("node/budget/{name}").into_bytes()
}

fn decode(bytes: &[u8]) -> Option<Usage> {
    let day = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
    let used = u64::from_be_bytes(bytes.get(8..16)?.try_into().ok()?);
    (bytes.len() == 16).then_some(Usage { day, used })
}

impl Budgets {
    fn usage(&mut self, name: &str, load: &dyn Fn(&[u8]) -> Option<Vec<u8>>, today: u64) -> &mut Usage {
        let u = self.usage.entry(name.to_owned()).or_insert_with(|| {
            let saved = load(&key(name));
            match saved.as_deref().map(decode) {
                Some(Some(u)) => u,
                Some(None) => {
                    // Unreadable: counting from zero could overspend, so today counts as spent.
                    tracing::warn!(budget = name, "saved byte budget unreadable; today's budget counts as spent");
                    Usage { day: today, used: u64::MAX }
                }
                None => Usage { day: today, used: 0 },
            }
        });
        if u.day != today {
            *u = Usage { day: today, used: 0 };
        }
        u
    }

    /// What is left of today's budget. `load` reads the store's state.
    pub(crate) fn left(&mut self, b: &LinkBudget, now: DtnTime, load: &dyn Fn(&[u8]) -> Option<Vec<u8>>) -> u64 {
        b.per_day.saturating_sub(self.usage(&b.name, load, day_of(now)).used)
    }

    /// Counts `bytes` sent today on `b`.
    pub(crate) fn spend(&mut self, b: &LinkBudget, now: DtnTime, bytes: u64, load: &dyn Fn(&[u8]) -> Option<Vec<u8>>) {
        let u = self.usage(&b.name, load, day_of(now));
        u.used = u.used.saturating_add(bytes);
        if !self.dirty.contains(&b.name) {
            self.dirty.push(b.name.clone());
        }
    }

    /// Store writes for the counts changed since the last call.
    pub(crate) fn take_writes(&mut self) -> Vec<WriteOp> {
        let dirty = std::mem::take(&mut self.dirty);
        dirty
            .into_iter()
            .filter_map(|name| {
                let u = self.usage.get(&name)?;
                let mut value = u.day.to_be_bytes().to_vec();
                value.extend_from_slice(&u.used.to_be_bytes());
                Some(WriteOp::PutState { key: key(&name), value: Some(value) })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(per_day: u64) -> LinkBudget {
        LinkBudget { name: "peer".into(), per_day }
    }

    #[test]
    fn counts_resets_at_the_day_and_reloads() {
        let none = |_: &[u8]| None;
        let mut budgets = Budgets::default();
        let t = DtnTime(10 * DAY_MS + 5);
        assert_eq!(budgets.left(&b(1000), t, &none), 1000);
        budgets.spend(&b(1000), t, 700, &none);
        assert_eq!(budgets.left(&b(1000), t, &none), 300);
        budgets.spend(&b(1000), t, 700, &none);
        assert_eq!(budgets.left(&b(1000), t, &none), 0);
        let writes = budgets.take_writes();
        assert_eq!(writes.len(), 1);
        assert!(budgets.take_writes().is_empty());
        let WriteOp::PutState { key: k, value: Some(v) } = &writes[0] else { panic!("not a state write") };
        assert_eq!(k, &key("peer"));
        // A restart reads the count back: same day, still spent.
        let saved = v.clone();
        let load = move |_: &[u8]| Some(saved.clone());
        let mut again = Budgets::default();
        assert_eq!(again.left(&b(1000), t, &load), 0);
        // The next day starts afresh.
        assert_eq!(again.left(&b(1000), next_day(t), &load), 1000);
        assert_eq!(next_day(t), DtnTime(11 * DAY_MS));
    }

    #[test]
    fn unreadable_count_spends_today() {
        let load = |_: &[u8]| Some(vec![1, 2, 3]);
        let mut budgets = Budgets::default();
        assert_eq!(budgets.left(&b(1000), DtnTime(5), &load), 0);
        assert_eq!(budgets.left(&b(1000), DtnTime(DAY_MS), &load), 1000);
    }
}
