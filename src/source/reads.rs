//! What the sources have read so far, for anyone who asks from another
//! thread: how many reads of each table each source made (and how many
//! failed), which source serves each table now, and what the reads cost.
//!
//! The exporter (`sockwatch export`) serves these as counters while the
//! watcher's loop goes on reading, so they are kept behind a lock in an
//! [`Arc`] that [`super::sources::Sources`] updates after each read and a
//! scrape copies out ([`Reads::tally`]). The lock is taken once per read
//! (every `--interval`), never across a read, so a scrape never waits on
//! the kernel.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::endpoint::{SourceKind, Table};

/// The upper bounds, in seconds, of the buckets that read costs are
/// counted in: a sock_diag read of the four tables takes tens of
/// microseconds, a read of /proc milliseconds, more on a busy host.
pub const COST_BOUNDS: [f64; 12] = [
    25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 100e-3, 1.0,
];

/// How often one source read one table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableReads {
    /// Complete reads.
    pub done: u64,
    /// Reads that failed (the table kept what was known of it, or moved to
    /// another source).
    pub failed: u64,
}

/// What one source's reads cost: each call reads every table the source
/// serves at once (one request may answer several), so costs are per
/// source, not per table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cost {
    /// How many reads.
    pub count: u64,
    /// Their time in all, in seconds.
    pub seconds: f64,
    /// How many took at most each of [`COST_BOUNDS`] (and more than the
    /// bound before); those beyond the last bound are `count` less the sum.
    pub buckets: [u64; COST_BOUNDS.len()],
}

impl Cost {
    fn add(&mut self, took: Duration) {
        let seconds = took.as_secs_f64();
        self.count += 1;
        self.seconds += seconds;
        if let Some(i) = COST_BOUNDS.iter().position(|&bound| seconds <= bound) {
            self.buckets[i] += 1;
        }
    }
}

/// A copy of the counts at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    /// Reads of each table by each source, in table order.
    pub tables: BTreeMap<(Table, &'static str), TableReads>,
    /// The source that serves each table now.
    pub routes: BTreeMap<Table, SourceKind>,
    /// The cost of each source's reads, by the source's name.
    pub costs: BTreeMap<&'static str, Cost>,
}

/// The counts, shared between the watcher and whoever reports them.
#[derive(Debug, Default)]
pub struct Reads {
    tally: Mutex<Tally>,
}

impl Reads {
    /// No reads yet.
    pub fn new() -> Arc<Reads> {
        Arc::new(Reads::default())
    }

    /// A copy of the counts now.
    pub fn tally(&self) -> Tally {
        self.lock().clone()
    }

    /// Records that `source` read `done` completely and failed to read
    /// `failed`, in `took`.
    pub(crate) fn record(
        &self,
        source: SourceKind,
        done: &[Table],
        failed: impl IntoIterator<Item = Table>,
        took: Duration,
    ) {
        let mut tally = self.lock();
        let name = source.as_str();
        // Counted per table, whichever namespace it is in: namespaces come
        // and go under --all-netns, and the series must not grow with them.
        for &table in done {
            tally
                .tables
                .entry((table.in_netns(0), name))
                .or_default()
                .done += 1;
        }
        for table in failed {
            tally
                .tables
                .entry((table.in_netns(0), name))
                .or_default()
                .failed += 1;
        }
        tally.costs.entry(name).or_default().add(took);
    }

    /// Records which source serves each table now.
    pub(crate) fn set_routes(&self, routes: impl IntoIterator<Item = (Table, SourceKind)>) {
        let mut tally = self.lock();
        tally.routes.clear();
        // One entry per table, whichever namespace it is in (where they
        // differ, the last namespace's source stands for all).
        tally.routes.extend(
            routes
                .into_iter()
                .map(|(table, kind)| (table.in_netns(0), kind)),
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tally> {
        // Counts stay meaningful whatever a panicking holder left half done.
        self.tally.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::{Family, Transport};

    #[test]
    fn reads_are_counted_per_table_and_costs_per_source() {
        let reads = Reads::new();
        let tcp = Table::new(Transport::Tcp, Family::Inet);
        let udp6 = Table::new(Transport::Udp, Family::Inet6);
        reads.record(
            SourceKind::Netlink,
            &[tcp],
            [udp6],
            Duration::from_micros(40),
        );
        reads.record(SourceKind::Proc, &[udp6], [], Duration::from_secs(2));
        reads.set_routes([(tcp, SourceKind::Netlink), (udp6, SourceKind::Proc)]);
        let tally = reads.tally();
        assert_eq!(
            tally.tables[&(tcp, "netlink")],
            TableReads { done: 1, failed: 0 }
        );
        assert_eq!(
            tally.tables[&(udp6, "netlink")],
            TableReads { done: 0, failed: 1 }
        );
        assert_eq!(tally.tables[&(udp6, "proc")].done, 1);
        let netlink = &tally.costs["netlink"];
        assert_eq!(netlink.count, 1);
        assert_eq!(netlink.buckets[1], 1, "40 µs is in the 50 µs bucket");
        let proc = &tally.costs["proc"];
        assert_eq!(proc.count, 1);
        assert_eq!(proc.buckets.iter().sum::<u64>(), 0, "2 s is beyond 1 s");
        assert!((proc.seconds - 2.0).abs() < 1e-9);
        assert_eq!(tally.routes[&udp6], SourceKind::Proc);
    }
}
