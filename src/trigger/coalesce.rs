//! Deciding when a trigger becomes a read: coalescing, pausing, re-reading.
//!
//! Records say "something listened" or "something bound"; a read of the
//! tables answers what. Three rules connect them, kept here apart from the
//! rings so that they can be tested with scripted records and a scripted
//! clock:
//! - **Coalescing.** Reads are taken from buckets of [`BURST`] tokens: one
//!   for what listens (refilled one per [`REFILL`]), one for what binds
//!   (one per [`BIND_REFILL`]). A listener that appears alone is read at
//!   once; a storm of binds (a DNS resolver's client sockets, thousands a
//!   second) empties the bind bucket, and then the bind rings are paused
//!   (`PERF_EVENT_IOC_PAUSE_OUTPUT`: the kernel drops records instead of
//!   waking us) and one read is scheduled for when a token is back; listens
//!   keep their own rings and bucket, so a TCP listener opened during the
//!   storm is still read at once. A paused ring has lost records, so the
//!   read after a pause covers its tables whatever they were.
//! - **The race.** `inet_sock_set_state` fires before the socket is hashed,
//!   and `sys_enter_bind` before the bind is done: a read at once may not
//!   find the new listener. A listen whose (family, port) the read did not
//!   find, and a bind whose return (`sys_exit_bind`) has not been seen, are
//!   read again after 100 µs, 1 ms and 4 ms ([`RETRIES`]), then given up:
//!   tracepoints are global, so the listener may well be in another
//!   network namespace, which no read of ours will ever show.
//! - **Lost records** (`PERF_RECORD_LOST`) mean any table may have changed.

use std::time::{Duration, Instant};

use super::records::Record;

/// Immediate reads before the bucket paces them.
pub const BURST: u32 = 8;
/// One more immediate read for listens per this much time.
pub const REFILL: Duration = Duration::from_millis(10);
/// One more immediate read for binds per this much time: a bind storm is
/// read at most 40 times a second (the binds of a storm are mostly
/// bind(0), whose ports sockwatch does not report anyway).
pub const BIND_REFILL: Duration = Duration::from_millis(25);
/// When a read that missed an expected listener is tried again, after it.
pub const RETRIES: [Duration; 3] = [
    Duration::from_micros(100),
    Duration::from_millis(1),
    Duration::from_millis(4),
];
/// Binds followed at once, at most: past this, the oldest is forgotten
/// (its read happened; only its re-read is lost).
const MAX_BINDS: usize = 64;

/// Which tables a read should cover.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Need {
    /// TCP, both families.
    pub tcp: bool,
    /// UDP, both families.
    pub udp: bool,
}

impl Need {
    /// Every table.
    pub const ALL: Need = Need {
        tcp: true,
        udp: true,
    };

    /// Whether any table is asked for.
    pub fn any(self) -> bool {
        self.tcp || self.udp
    }
}

/// A listener a read should find: a TCP socket of `family` (`AF_INET`,
/// `AF_INET6`) on `port` (`None`: the tracepoint fired before a port was
/// chosen, so any new TCP listener of the family will do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expect {
    /// `AF_INET` or `AF_INET6`.
    pub family: u16,
    /// The port, when the tracepoint knew it.
    pub port: Option<u16>,
}

/// Which rings: those of `inet_sock_set_state`, those of the bind pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rings {
    /// The listen rings.
    Listen,
    /// The bind rings.
    Bind,
}

/// What the trigger should do after [`Coalescer::decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing now.
    Wait,
    /// Read these tables now.
    Read(Need),
    /// Pause these rings (a read is due at the deadline), then decide again.
    Pause(Rings),
}

/// Immediate reads, refilled over time.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
    refill: Duration,
    /// Paused until this scheduled read.
    paused_until: Option<Instant>,
}

impl Bucket {
    fn new(now: Instant, refill: Duration) -> Bucket {
        Bucket {
            tokens: f64::from(BURST),
            refilled: now,
            refill,
            paused_until: None,
        }
    }

    /// Takes a token, or pauses until one is back and returns false.
    fn take(&mut self, now: Instant) -> bool {
        let earned = now.duration_since(self.refilled).as_secs_f64() / self.refill.as_secs_f64();
        self.tokens = (self.tokens + earned).min(f64::from(BURST));
        self.refilled = self.refilled.max(now);
        // (A scheduled read comes when the refill reaches one token, which
        // rounding may leave a hair short of it.)
        if self.tokens >= 1.0 - 1e-9 {
            self.tokens = (self.tokens - 1.0).max(0.0);
            return true;
        }
        self.paused_until = Some(now + self.refill.mul_f64(1.0 - self.tokens));
        false
    }

    /// Ends a pause that is due; true if it did.
    fn resume(&mut self, now: Instant) -> bool {
        if self.paused_until.is_some_and(|t| t <= now) {
            self.paused_until = None;
            return true;
        }
        false
    }
}

#[derive(Debug, Clone, Copy)]
struct Bind {
    pid: u32,
    /// A read has happened since the bind began: its return asks for another.
    read: bool,
    /// Re-reads so far, and when the next is due.
    attempt: usize,
    due: Option<Instant>,
}

/// The decision state: tokens, what the next read must cover and find,
/// re-reads scheduled, binds in flight.
#[derive(Debug)]
pub struct Coalescer {
    listen: Bucket,
    bind: Bucket,
    /// Tables asked for and not read yet.
    pending: Need,
    /// Listeners the next read should find, with the re-reads spent on each.
    fresh: Vec<(Expect, usize)>,
    /// Listeners the read just taken should have found.
    checking: Vec<(Expect, usize)>,
    /// Listeners to look for again at a time.
    retries: Vec<(Expect, usize, Instant)>,
    binds: Vec<Bind>,
    /// Listeners given up on (another namespace, most likely).
    pub gave_up: u64,
}

impl Coalescer {
    /// A full bucket at `now`.
    pub fn new(now: Instant) -> Coalescer {
        Coalescer {
            listen: Bucket::new(now, REFILL),
            bind: Bucket::new(now, BIND_REFILL),
            pending: Need::default(),
            fresh: Vec::new(),
            checking: Vec::new(),
            retries: Vec::new(),
            binds: Vec::new(),
            gave_up: 0,
        }
    }

    /// Forgets what records asked for (the self-test's, before the first
    /// full read).
    pub fn clear(&mut self) {
        self.pending = Need::default();
        self.fresh.clear();
        self.binds.clear();
    }

    /// Takes in one record.
    pub fn record(&mut self, record: &Record) {
        match *record {
            Record::Listen { family, port, .. } => {
                self.pending.tcp = true;
                let expect = Expect {
                    family,
                    port: (port != 0).then_some(port),
                };
                if !self.fresh.iter().any(|(e, _)| *e == expect) {
                    self.fresh.push((expect, 0));
                }
            }
            Record::Unlisten => self.pending.tcp = true,
            Record::BindEnter { pid } => {
                self.pending.udp = true;
                if self.binds.len() == MAX_BINDS {
                    self.binds.remove(0);
                }
                self.binds.push(Bind {
                    pid,
                    read: false,
                    attempt: 0,
                    due: None,
                });
            }
            Record::BindExit { pid } => {
                // Binds of other kinds (netlink, unix) also return here:
                // only one whose start woke us counts.
                if let Some(i) = self.binds.iter().position(|b| b.pid == pid) {
                    if self.binds.remove(i).read {
                        // The read taken since may have come too early.
                        self.pending.udp = true;
                    }
                }
            }
            Record::Lost(_) => self.pending = Need::ALL,
        }
    }

    /// The bind rings lost records: UDP may have changed.
    pub fn lost_binds(&mut self) {
        self.pending.udp = true;
    }

    /// Whether to read now, pause some rings, or wait. A read covers every
    /// table, whichever bucket paid for it.
    pub fn decide(&mut self, now: Instant) -> Action {
        if self.pending.tcp && self.listen.paused_until.is_none() {
            if self.listen.take(now) {
                return Action::Read(self.take());
            }
            return Action::Pause(Rings::Listen);
        }
        if self.pending.udp && self.bind.paused_until.is_none() {
            if self.bind.take(now) {
                return Action::Read(self.take());
            }
            return Action::Pause(Rings::Bind);
        }
        Action::Wait
    }

    /// The tables of the read being taken; what it should find is checked
    /// by [`Coalescer::after_read`].
    fn take(&mut self) -> Need {
        self.checking.append(&mut self.fresh);
        for bind in &mut self.binds {
            bind.read = true;
            bind.due = None;
        }
        std::mem::take(&mut self.pending)
    }

    /// When [`Coalescer::due`] should next be called.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.listen
            .paused_until
            .into_iter()
            .chain(self.bind.paused_until)
            .chain(self.retries.iter().map(|r| r.2))
            .chain(self.binds.iter().filter_map(|b| b.due))
            .min()
    }

    /// Moves what is due at `now` into the pending read. Returns the rings
    /// whose pause ends: the caller resumes them (and takes what they hold
    /// before deciding).
    pub fn due(&mut self, now: Instant) -> Vec<Rings> {
        let mut i = 0;
        while i < self.retries.len() {
            if self.retries[i].2 <= now {
                let (expect, attempt, _) = self.retries.swap_remove(i);
                self.pending.tcp = true;
                self.fresh.push((expect, attempt));
            } else {
                i += 1;
            }
        }
        for bind in &mut self.binds {
            if bind.due.is_some_and(|d| d <= now) {
                bind.due = None;
                self.pending.udp = true;
            }
        }
        // Paused rings dropped records.
        let mut resumed = Vec::new();
        if self.listen.resume(now) {
            self.pending.tcp = true;
            resumed.push(Rings::Listen);
        }
        if self.bind.resume(now) {
            self.pending.udp = true;
            resumed.push(Rings::Bind);
        }
        resumed
    }

    /// After a read taken on [`Action::Read`]: `present` says whether the
    /// read found each expected listener; those it did not are read again
    /// later (see [`RETRIES`]), as are binds whose return is still unseen.
    pub fn after_read(&mut self, now: Instant, mut present: impl FnMut(&Expect) -> bool) {
        for (expect, attempt) in std::mem::take(&mut self.checking) {
            if present(&expect) {
                continue;
            }
            match RETRIES.get(attempt) {
                Some(&wait) => self.retries.push((expect, attempt + 1, now + wait)),
                None => self.gave_up += 1,
            }
        }
        let mut gave_up = 0;
        self.binds.retain_mut(|bind| {
            if !bind.read || bind.due.is_some() {
                return true;
            }
            match RETRIES.get(bind.attempt) {
                Some(&wait) => {
                    bind.attempt += 1;
                    bind.due = Some(now + wait);
                    true
                }
                None => {
                    gave_up += 1;
                    false
                }
            }
        });
        self.gave_up += gave_up;
    }

    /// Whether these rings are paused.
    pub fn paused(&self, rings: Rings) -> bool {
        match rings {
            Rings::Listen => self.listen.paused_until.is_some(),
            Rings::Bind => self.bind.paused_until.is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Duration = Duration::from_micros(1);

    fn listen(port: u16) -> Record {
        Record::Listen {
            family: 2,
            port,
            pid: 1,
        }
    }

    fn expect(port: u16) -> Expect {
        Expect {
            family: 2,
            port: Some(port),
        }
    }

    #[test]
    fn a_lone_listen_is_read_at_once() {
        let start = Instant::now();
        let mut c = Coalescer::new(start);
        assert_eq!(c.decide(start), Action::Wait, "nothing asked");
        c.record(&listen(80));
        assert_eq!(
            c.decide(start),
            Action::Read(Need {
                tcp: true,
                udp: false
            })
        );
        c.after_read(start, |e| *e == expect(80));
        assert_eq!(c.next_deadline(), None, "found: nothing to read again");
        assert_eq!(c.decide(start), Action::Wait);
    }

    /// 3,000 binds a second for a second, one record pair per wake-up
    /// while the bind rings are not paused, and a TCP listener every 100 ms
    /// on the listen rings: the reads and pauses, and how late each
    /// listener was read.
    fn storm() -> (u32, u32, Vec<Duration>) {
        let start = Instant::now();
        let mut c = Coalescer::new(start);
        let (mut reads, mut pauses, mut late) = (0, 0, Vec::new());
        let mut waiting: Option<Instant> = None;
        let mut read = |c: &mut Coalescer, now: Instant, waiting: &mut Option<Instant>| {
            reads += 1;
            if let Some(since) = waiting.take() {
                late.push(now - since);
            }
            c.after_read(now, |_| true);
        };
        for i in 0..3000u32 {
            let now = start + i * 333 * US;
            while let Some(deadline) = c.next_deadline().filter(|&d| d <= now) {
                c.due(deadline);
                loop {
                    match c.decide(deadline) {
                        Action::Read(_) => read(&mut c, deadline, &mut waiting),
                        Action::Pause(_) => pauses += 1,
                        Action::Wait => break,
                    }
                }
            }
            if i % 300 == 0 {
                c.record(&listen(8000 + i as u16));
                waiting = Some(now);
            }
            if !c.paused(Rings::Bind) {
                c.record(&Record::BindEnter { pid: i });
                c.record(&Record::BindExit { pid: i });
            }
            loop {
                match c.decide(now) {
                    Action::Read(_) => read(&mut c, now, &mut waiting),
                    Action::Pause(rings) => {
                        assert_eq!(rings, Rings::Bind, "listens have their own bucket");
                        pauses += 1;
                    }
                    Action::Wait => break,
                }
            }
        }
        (reads, pauses, late)
    }

    #[test]
    fn a_storm_is_coalesced_into_paced_reads() {
        let (reads, pauses, late) = storm();
        // The bind burst, then one read per bind refill (40 a second); the
        // listeners are read at once, with tokens of their own.
        assert!((45..=60).contains(&reads), "{reads} reads");
        assert!(pauses >= 30, "{pauses} pauses");
        assert_eq!(late.len(), 10, "every listener read");
        assert!(late.iter().all(|l| l.is_zero()), "{late:?}");
    }

    #[test]
    fn the_read_after_a_pause_covers_the_paused_tables() {
        let start = Instant::now();
        let mut c = Coalescer::new(start);
        for _ in 0..BURST {
            c.record(&Record::BindEnter { pid: 9 });
            c.record(&Record::BindExit { pid: 9 });
            assert!(matches!(c.decide(start), Action::Read(_)));
            c.after_read(start, |_| true);
        }
        c.record(&Record::BindEnter { pid: 9 });
        assert_eq!(c.decide(start), Action::Pause(Rings::Bind));
        assert!(c.paused(Rings::Bind) && !c.paused(Rings::Listen));
        assert_eq!(c.decide(start), Action::Wait);
        let due = c.next_deadline().unwrap();
        assert_eq!(due - start, BIND_REFILL);
        assert!(c.due(due - US).is_empty());
        assert_eq!(c.due(due), [Rings::Bind], "the pause ends");
        assert_eq!(
            c.decide(due),
            Action::Read(Need {
                tcp: false,
                udp: true
            })
        );
    }

    #[test]
    fn a_storm_of_listens_elsewhere_pauses_the_listen_rings() {
        // Tracepoints are global: another namespace's churn of listeners.
        let start = Instant::now();
        let mut c = Coalescer::new(start);
        for port in 0..BURST as u16 {
            c.record(&listen(9000 + port));
            assert!(matches!(c.decide(start), Action::Read(_)));
            c.after_read(start, |_| true);
        }
        c.record(&listen(9999));
        assert_eq!(c.decide(start), Action::Pause(Rings::Listen));
        let due = c.next_deadline().unwrap();
        assert_eq!(due - start, REFILL);
        assert_eq!(c.due(due), [Rings::Listen]);
        assert!(matches!(
            c.decide(due),
            Action::Read(Need { tcp: true, .. })
        ));
    }

    #[test]
    fn a_listener_not_found_is_read_again_then_given_up() {
        let start = Instant::now();
        let mut c = Coalescer::new(start);
        c.record(&listen(8080));
        assert!(matches!(c.decide(start), Action::Read(_)));
        let mut now = start;
        for wait in RETRIES {
            c.after_read(now, |_| false);
            let due = c.next_deadline().expect("a re-read");
            assert_eq!(due - now, wait);
            assert!(c.due(due - US).is_empty() && c.decide(due - US) == Action::Wait);
            c.due(due);
            assert!(matches!(
                c.decide(due),
                Action::Read(Need { tcp: true, .. })
            ));
            now = due;
        }
        c.after_read(now, |_| false);
        assert_eq!(c.next_deadline(), None, "given up after three");
        assert_eq!(c.gave_up, 1);
    }

    #[test]
    fn the_race_recovers_on_a_re_read() {
        // The tracepoint fired before the socket was hashed: the first read
        // misses it, the one 100 µs later finds it.
        let start = Instant::now();
        let mut c = Coalescer::new(start);
        c.record(&listen(8080));
        assert!(matches!(c.decide(start), Action::Read(_)));
        c.after_read(start + 50 * US, |_| false);
        let due = c.next_deadline().unwrap();
        c.due(due);
        assert!(matches!(c.decide(due), Action::Read(_)));
        c.after_read(due, |e| *e == expect(8080));
        assert_eq!(c.next_deadline(), None);
        assert_eq!(c.gave_up, 0);
    }

    #[test]
    fn a_bind_is_read_again_when_its_return_comes_after_the_read() {
        let start = Instant::now();
        let mut c = Coalescer::new(start);
        c.record(&Record::BindEnter { pid: 7 });
        assert_eq!(
            c.decide(start),
            Action::Read(Need {
                tcp: false,
                udp: true
            })
        );
        c.after_read(start, |_| true);
        let due = c.next_deadline().expect("bind not returned yet: a re-read");
        assert_eq!(due - start, RETRIES[0]);
        // Its return arrives (silently) before the re-read is due: read now.
        c.record(&Record::BindExit { pid: 7 });
        assert!(matches!(
            c.decide(start + 50 * US),
            Action::Read(Need { udp: true, .. })
        ));
        c.after_read(start + 50 * US, |_| true);
        assert_eq!(c.next_deadline(), None);
    }

    #[test]
    fn a_bind_returned_before_the_read_needs_nothing_more() {
        let start = Instant::now();
        let mut c = Coalescer::new(start);
        c.record(&Record::BindEnter { pid: 7 });
        c.record(&Record::BindExit { pid: 7 });
        assert!(matches!(c.decide(start), Action::Read(_)));
        c.after_read(start, |_| true);
        assert_eq!(c.next_deadline(), None);
        assert_eq!(c.decide(start), Action::Wait);
    }

    #[test]
    fn other_binds_returning_ask_for_nothing() {
        // ss and ip bind netlink sockets: their entry is filtered out by
        // address length, their return is not.
        let start = Instant::now();
        let mut c = Coalescer::new(start);
        c.record(&Record::BindExit { pid: 5 });
        assert_eq!(c.decide(start), Action::Wait);
    }

    #[test]
    fn a_scripted_ring_through_the_parser() {
        use crate::trigger::records::{self, tests as ring};
        // One wake-up's bytes: a bind begun and returned, a listener that
        // the read will miss at first, and a connection's LISTEN ->
        // SYN_RECV that the kernel filter would have dropped anyway.
        let mut bytes = ring::sample(700, 9, (0, 0), 0, 0);
        bytes.extend(ring::sample(699, 9, (0, 0), 0, 0));
        bytes.extend(ring::sample(1581, 9, (7, 10), 10, 8443));
        bytes.extend(ring::sample(1581, 9, (10, 3), 10, 8443));
        let mut records = Vec::new();
        assert_eq!(records::parse(&bytes, &ring::layout(), &mut records), 0);
        let start = Instant::now();
        let mut c = Coalescer::new(start);
        for record in &records {
            c.record(record);
        }
        assert_eq!(c.decide(start), Action::Read(Need::ALL));
        let v6 = |e: &Expect| e.family == 10 && e.port == Some(8443);
        c.after_read(start, |e| !v6(e));
        let due = c.next_deadline().expect("the listener is read again");
        assert_eq!(due - start, RETRIES[0]);
        // The next wake-up's bytes: the kernel dropped some.
        records.clear();
        records::parse(&ring::lost(40), &ring::layout(), &mut records);
        c.record(&records[0]);
        assert_eq!(c.decide(start + 10 * US), Action::Read(Need::ALL));
        c.after_read(start + 10 * US, |e| v6(e));
        assert_eq!(c.next_deadline(), Some(due), "the re-read stays scheduled");
    }

    #[test]
    fn lost_records_read_everything() {
        let start = Instant::now();
        let mut c = Coalescer::new(start);
        c.record(&Record::Lost(3));
        assert_eq!(c.decide(start), Action::Read(Need::ALL));
    }
}
