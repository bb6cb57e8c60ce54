//! Detection: when to read the socket tables for new listeners.
//!
//! Closing is pushed by the kernel (netlink destroy events); appearing is
//! not, so new listeners are found by reading the tables. Reading them every
//! interval (`--detect poll`, 0.1.0's way) costs a walk of the kernel's
//! hashes each time: 70–300 µs through netlink, milliseconds through /proc.
//! `--detect changes` reads the namespace's socket counters instead —
//! `/proc/net/sockstat` and `sockstat6`, per network namespace, readable by
//! anyone, about 2 µs — and reads the tables only when one moved: `TCP:
//! inuse` rises when a socket listens (it is hashed), `UDP: inuse` when one
//! binds, and their IPv6 twins likewise.
//!
//! Two limits are designed for:
//! - **Balanced changes**: a listener closing and another opening within one
//!   interval leave every counter where it was. A full read every few
//!   seconds is the safety net, and a pushed close of a known listener
//!   makes the next tick read (a restart is then seen within one interval).
//! - **Churn**: in a busy namespace the counters move every tick. Reads are
//!   paced by their measured CPU time, so that they never take more than
//!   [`READ_BUDGET`] of a CPU however short the interval, yet never wait
//!   longer than [`MAX_PACE`]. The budget is a bucket of [`READ_BURST`]: a
//!   quiet namespace's occasional reads happen at once; only a namespace
//!   whose counters move all the time is slowed down.
//!
//! Counters are per network namespace: with several watched (`--netns`,
//! `--all-netns`), each has its own [`Sockstat`] and [`Gate`], and only a
//! namespace whose counters moved has its tables read (the watcher spreads
//! the checks and the safety nets when there are many).
//!
//! [`Gate`] holds the decision and is tested with scripted counters and
//! costs; [`Sockstat`] reads the counters.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// How new listeners are detected, as `--detect` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Detect {
    /// The best that works here: kernel triggers where they are available
    /// (root or CAP_PERFMON), else socket counters, else polling.
    Auto,
    /// perf tracepoints on listen and bind wake sockwatch, which then reads
    /// the tables at once (root or CAP_PERFMON).
    Kernel,
    /// Read the socket counters every interval, the tables when they move.
    Changes,
    /// Read the tables every interval.
    Poll,
}

/// The interval of counter checks: a new listener is read within it.
pub const CHANGES_INTERVAL: Duration = Duration::from_millis(15);
/// The safety net through netlink: a full read this often, whatever the
/// counters say (about 0.3 ms of kernel time each).
pub const NETLINK_SAFETY: Duration = Duration::from_secs(2);
/// The safety net through /proc, whose reads cost milliseconds.
pub const PROC_SAFETY: Duration = Duration::from_secs(10);
/// The safety net with kernel triggers through netlink (the default
/// interval then: nothing is checked between reads). It finds what no
/// tracepoint announces: a UDP socket disconnected, a listener shut down
/// or bound through io_uring, a CPU that came online.
pub const KERNEL_SAFETY: Duration = Duration::from_secs(5);
/// The share of one CPU that reads of the tables may take, on average.
pub const READ_BUDGET: f64 = 0.05;
/// The longest a read waits for the pace: past it, a new listener would be
/// seen too late to be worth the CPU saved.
pub const MAX_PACE: Duration = Duration::from_secs(1);
/// How much read time may be spent at once before the budget paces reads:
/// two seconds' worth of it.
pub const READ_BURST: Duration = Duration::from_millis(100);
/// The least burst of one namespace's gate when several share the budget:
/// enough for a few reads of one namespace (a listener, its close, the
/// reads that confirm it), so that a quiet namespace among 100 is not
/// paced for its second listener; only a namespace whose counters move
/// all the time is. With 100 namespaces, 1 s of reads at most at once.
pub const LEAST_BURST: Duration = Duration::from_millis(10);

/// The counters that move when a listener appears: `TCP`, `UDP`, `TCP6`,
/// `UDP6` `inuse`, and, where unix sockets are watched, `sockets: used`
/// (every socket of the namespace: unix sockets have no counter of their
/// own, so with unix tables the tables are read whenever any socket is made
/// or freed, paced by [`READ_BUDGET`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters(pub [u64; 5]);

/// Reads the counters of one network namespace.
#[derive(Debug)]
pub struct Sockstat {
    /// The counters when opened.
    pub baseline: Counters,
    v4: File,
    v6: Option<File>,
    buf: Vec<u8>,
    /// Whether `sockets: used` counts (unix tables are watched).
    unix: bool,
}

impl Sockstat {
    /// Opens `<proc_root>/net/sockstat` (and `sockstat6`, absent on a
    /// kernel without IPv6). An error where they cannot be read.
    /// With `unix`, `sockets: used` counts too.
    pub fn open(proc_root: &Path, unix: bool) -> io::Result<Sockstat> {
        let v4 = File::open(proc_root.join("net/sockstat"))?;
        let v6 = File::open(proc_root.join("net/sockstat6")).ok();
        let mut sockstat = Sockstat {
            baseline: Counters::default(),
            v4,
            v6,
            buf: vec![0; 4096],
            unix,
        };
        sockstat.baseline = sockstat.read()?;
        Ok(sockstat)
    }

    /// The counters now. An error when a file cannot be read or no longer
    /// says what it did (then the caller polls instead).
    pub fn read(&mut self) -> io::Result<Counters> {
        let mut counters = Counters::default();
        let n = self.v4.read_at(&mut self.buf, 0)?;
        let found = parse(&self.buf[..n], &mut counters, ["TCP:", "UDP:"], 0);
        if found < 2 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "net/sockstat has no TCP or UDP line",
            ));
        }
        if self.unix && parse_used(&self.buf[..n], &mut counters) == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "net/sockstat has no 'sockets: used' line",
            ));
        }
        if let Some(v6) = &self.v6 {
            let n = v6.read_at(&mut self.buf, 0)?;
            parse(&self.buf[..n], &mut counters, ["TCP6:", "UDP6:"], 2);
        }
        Ok(counters)
    }
}

/// Reads `inuse N` from the lines starting with `keys` into
/// `counters[first..]`; returns how many were found.
fn parse(text: &[u8], counters: &mut Counters, keys: [&str; 2], first: usize) -> usize {
    let mut found = 0;
    for line in text.split(|&b| b == b'\n') {
        let mut words = line.split(|&b| b == b' ');
        let Some(key) = words.next() else { continue };
        let Some(slot) = keys.iter().position(|k| k.as_bytes() == key) else {
            continue;
        };
        if words.next() != Some(b"inuse") {
            continue;
        }
        let value = words
            .next()
            .and_then(|w| std::str::from_utf8(w).ok()?.parse().ok());
        if let Some(value) = value {
            counters.0[first + slot] = value;
            found += 1;
        }
    }
    found
}

/// Reads `sockets: used N` into `counters[4]`; returns 1 if found.
fn parse_used(text: &[u8], counters: &mut Counters) -> usize {
    for line in text.split(|&b| b == b'\n') {
        let Some(rest) = line.strip_prefix(b"sockets: used ") else {
            continue;
        };
        if let Some(value) = std::str::from_utf8(rest).ok().and_then(|w| w.parse().ok()) {
            counters.0[4] = value;
            return 1;
        }
    }
    0
}

/// Why the gate decided to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A counter moved.
    Moved,
    /// The safety net was due.
    Safety,
    /// A known listener closed: something may have taken its place.
    Closed,
    /// The counters could not be read.
    Blind,
}

/// The decision to read the tables, from counters and costs.
#[derive(Debug)]
pub struct Gate {
    last: Option<Counters>,
    last_full: Instant,
    safety: Duration,
    /// A read was asked for (a known listener closed, or the counters moved
    /// while the pace held reads back).
    pending: Option<Reason>,
    /// Read time that may still be spent now (negative: owed), in seconds;
    /// refilled at [`READ_BUDGET`] per second up to [`READ_BURST`].
    tokens: f64,
    /// When `tokens` was last refilled.
    refilled: Instant,
    /// When the last read started.
    last_read: Instant,
    /// This gate's share of [`READ_BUDGET`] and [`READ_BURST`]: 1 alone;
    /// `1/n` for each of `n` namespaces, so that their reads together stay
    /// within the budget (the burst never below [`LEAST_BURST`]).
    share: f64,
}

impl Gate {
    /// A gate whose safety net reads at least every `safety`; `now` is the
    /// time of the first full read, and `baseline` the counters read before
    /// it (what that read already accounts for).
    pub fn new(safety: Duration, now: Instant, baseline: Option<Counters>) -> Gate {
        Gate {
            last: baseline,
            last_full: now,
            safety,
            pending: None,
            tokens: READ_BURST.as_secs_f64(),
            share: 1.0,
            refilled: now,
            last_read: now,
        }
    }

    /// How often the safety net reads.
    pub fn safety(&self) -> Duration {
        self.safety
    }

    /// Makes the safety net read at least every `safety` from now on.
    pub fn set_safety(&mut self, safety: Duration) {
        self.safety = safety;
    }

    /// Gives this gate `share` (0 to 1) of the read budget and burst: the
    /// gates of several namespaces split them.
    pub fn set_share(&mut self, share: f64) {
        self.share = share.clamp(0.0, 1.0);
        self.tokens = self.tokens.min(self.burst());
    }

    /// The read time this gate may spend at once.
    fn burst(&self) -> f64 {
        (READ_BURST.as_secs_f64() * self.share).max(LEAST_BURST.as_secs_f64())
    }

    /// Takes the last full read to have been at `at`: gates of several
    /// namespaces are spread over their safety period this way, so that
    /// their reads do not all fall in one tick.
    pub fn set_last_full(&mut self, at: Instant) {
        self.last_full = at;
    }

    /// Whether to read the tables now, given the counters just read (`None`
    /// when they could not be).
    pub fn check(&mut self, now: Instant, counters: Option<Counters>) -> Option<Reason> {
        let moved = match (counters, self.last) {
            (Some(now), Some(before)) => now != before,
            (Some(_), None) => true,
            (None, _) => {
                self.pending.get_or_insert(Reason::Blind);
                false
            }
        };
        if counters.is_some() {
            self.last = counters;
        }
        if moved {
            self.pending.get_or_insert(Reason::Moved);
        }
        if now.duration_since(self.last_full) >= self.safety {
            self.pending.get_or_insert(Reason::Safety);
        }
        if self.pending.is_some() && self.may_read(now) {
            return self.pending.take();
        }
        None
    }

    /// Asks for a read at the next check (as the pace allows): a known
    /// listener closed, and a new one may have opened in the same instant,
    /// which the counters do not show; or a source waits for a second read
    /// to confirm an absence.
    pub fn force(&mut self) {
        self.pending.get_or_insert(Reason::Closed);
    }

    /// Records a read that took `cost`, started at `now`, with the counters
    /// sampled just before it (what it accounts for: a counter that moves
    /// later is news, even if it moves back to what an older check saw).
    /// Its cost is taken from the budget.
    pub fn note_read(&mut self, now: Instant, cost: Duration, before: Option<Counters>) {
        if before.is_some() {
            self.last = before;
        }
        self.last_full = now;
        self.refill(now);
        self.tokens -= cost.as_secs_f64();
        self.last_read = now;
    }

    /// Whether the budget allows a read now (or the last one is so long ago
    /// that waiting more would make a new listener late).
    fn may_read(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= 0.0 || now.duration_since(self.last_read) >= MAX_PACE
    }

    fn refill(&mut self, now: Instant) {
        let earned = now.duration_since(self.refilled).as_secs_f64() * READ_BUDGET * self.share;
        self.tokens = (self.tokens + earned).min(self.burst());
        self.refilled = self.refilled.max(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn counters(tcp: u64) -> Option<Counters> {
        Some(Counters([tcp, 0, 0, 0, 0]))
    }

    #[test]
    fn reads_only_when_a_counter_moves() {
        let start = Instant::now();
        let mut gate = Gate::new(Duration::from_secs(2), start, None);
        assert_eq!(gate.check(start, counters(1)), Some(Reason::Moved), "first");
        gate.note_read(start, 100 * Duration::from_micros(1), None);
        for tick in 1..100 {
            assert_eq!(gate.check(start + tick * 15 * MS, counters(1)), None);
        }
        assert_eq!(
            gate.check(start + 1600 * MS, counters(2)),
            Some(Reason::Moved)
        );
    }

    #[test]
    fn the_baseline_is_not_news() {
        let start = Instant::now();
        let mut gate = Gate::new(Duration::from_secs(2), start, counters(1));
        gate.note_read(start, MS, None);
        assert_eq!(gate.check(start + 15 * MS, counters(1)), None);
        assert_eq!(
            gate.check(start + 40 * MS, counters(2)),
            Some(Reason::Moved)
        );
    }

    #[test]
    fn a_change_between_the_baseline_and_the_read_is_accounted_for() {
        // A listener opened after the gate's first look but before the
        // first read: the read saw it, so its close (back to the first
        // look's counters) is news.
        let start = Instant::now();
        let mut gate = Gate::new(Duration::from_secs(10), start, counters(0));
        gate.note_read(start, MS / 10, counters(1));
        assert_eq!(
            gate.check(start + 15 * MS, counters(0)),
            Some(Reason::Moved)
        );
    }

    #[test]
    fn the_safety_net_reads_when_nothing_moves() {
        let start = Instant::now();
        let mut gate = Gate::new(Duration::from_secs(2), start, None);
        gate.check(start, counters(1));
        gate.note_read(start, MS, None);
        assert_eq!(gate.check(start + 1999 * MS, counters(1)), None);
        assert_eq!(
            gate.check(start + 2000 * MS, counters(1)),
            Some(Reason::Safety)
        );
    }

    #[test]
    fn a_pushed_close_reads_at_the_next_check() {
        let start = Instant::now();
        let mut gate = Gate::new(Duration::from_secs(2), start, None);
        gate.check(start, counters(1));
        gate.note_read(start, MS / 10, None);
        gate.force();
        assert_eq!(
            gate.check(start + 15 * MS, counters(1)),
            Some(Reason::Closed),
            "a balanced restart leaves the counters as they were"
        );
    }

    #[test]
    fn reads_are_paced_by_their_cost_but_not_forgotten() {
        let start = Instant::now();
        let mut gate = Gate::new(Duration::from_secs(10), start, counters(1));
        // Occasional reads happen at once: the bucket holds 100 ms.
        gate.note_read(start, 10 * MS, None);
        assert_eq!(
            gate.check(start + 15 * MS, counters(2)),
            Some(Reason::Moved)
        );
        // A busy namespace empties it: 60 ms reads, back to back.
        gate.note_read(start + 15 * MS, 60 * MS, None);
        assert_eq!(
            gate.check(start + 30 * MS, counters(3)),
            Some(Reason::Moved)
        );
        gate.note_read(start + 30 * MS, 60 * MS, None);
        // 30 ms owed at 5 % of a second per second: 600 ms more.
        assert_eq!(gate.check(start + 45 * MS, counters(4)), None, "paced");
        assert_eq!(gate.check(start + 500 * MS, counters(4)), None, "paced");
        assert_eq!(
            gate.check(start + 640 * MS, counters(4)),
            Some(Reason::Moved),
            "the move seen while paced is read once the pace allows"
        );
        // However costly a read, the next comes within a second.
        gate.note_read(start + 640 * MS, 500 * MS, None);
        assert_eq!(gate.check(start + 1500 * MS, counters(5)), None);
        assert_eq!(
            gate.check(start + 1640 * MS, counters(5)),
            Some(Reason::Moved)
        );
    }

    #[test]
    fn gates_that_share_the_budget_are_paced_by_their_share() {
        let start = Instant::now();
        let mut gate = Gate::new(Duration::from_secs(60), start, counters(1));
        // One of ten namespaces: a tenth of the 100 ms burst, refilled at a
        // tenth of 5 % a second.
        gate.set_share(0.1);
        gate.note_read(start, 10 * MS, None);
        assert_eq!(
            gate.check(start + 15 * MS, counters(2)),
            Some(Reason::Moved),
            "a quiet namespace's read still happens at once"
        );
        gate.note_read(start + 15 * MS, 10 * MS, None);
        // 10 ms owed at 0.5 % a second: 2 s; the pace caps it at 1 s.
        assert_eq!(gate.check(start + 500 * MS, counters(3)), None, "paced");
        assert_eq!(
            gate.check(start + 1015 * MS, counters(3)),
            Some(Reason::Moved)
        );
    }

    #[test]
    fn a_quiet_namespace_among_many_is_not_paced_for_its_second_listener() {
        let start = Instant::now();
        let mut gate = Gate::new(Duration::from_secs(60), start, counters(1));
        // One of a hundred: a hundredth of the burst would be 1 ms, less
        // than a listener's read and its close's.
        gate.set_share(0.01);
        gate.note_read(start, 3 * MS, None);
        gate.note_read(start + 5 * MS, 3 * MS, None);
        assert_eq!(
            gate.check(start + 100 * MS, counters(2)),
            Some(Reason::Moved),
            "read at once"
        );
        // A namespace that keeps moving is paced all the same.
        gate.note_read(start + 100 * MS, 5 * MS, None);
        assert_eq!(gate.check(start + 200 * MS, counters(3)), None, "paced");
    }

    #[test]
    fn unreadable_counters_read_the_tables() {
        let start = Instant::now();
        let mut gate = Gate::new(Duration::from_secs(2), start, None);
        gate.check(start, counters(1));
        gate.note_read(start, MS / 10, None);
        assert_eq!(gate.check(start + 15 * MS, None), Some(Reason::Blind));
    }

    #[test]
    fn parses_the_kernels_format() {
        let v4 = b"sockets: used 11\nTCP: inuse 3 orphan 0 tw 7 alloc 1002 mem 222\nUDP: inuse 2 mem 0\nUDPLITE: inuse 0\n";
        let v6 = b"TCP6: inuse 4\nUDP6: inuse 5\nUDPLITE6: inuse 0\n";
        let mut counters = Counters::default();
        assert_eq!(parse(v4, &mut counters, ["TCP:", "UDP:"], 0), 2);
        assert_eq!(parse(v6, &mut counters, ["TCP6:", "UDP6:"], 2), 2);
        assert_eq!(counters, Counters([3, 2, 4, 5, 0]));
        assert_eq!(parse_used(v4, &mut counters), 1);
        assert_eq!(counters, Counters([3, 2, 4, 5, 11]));
        assert_eq!(
            parse(
                b"garbage\nTCP: inuse x\n",
                &mut counters,
                ["TCP:", "UDP:"],
                0
            ),
            0
        );
    }

    #[test]
    fn reads_this_namespaces_counters() {
        let mut sockstat = Sockstat::open(Path::new("/proc/self"), true).unwrap();
        let before = sockstat.read().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let after = sockstat.read().unwrap();
        assert!(
            after.0[0] > before.0[0] || after.0[0] != before.0[0],
            "{before:?} {after:?}"
        );
        assert!(
            after.0[4] > 0,
            "'sockets: used' counts the listener: {after:?}"
        );
        drop(listener);
    }
}
