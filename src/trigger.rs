//! Kernel triggers: perf tracepoints that wake sockwatch when a socket
//! listens or binds, so that the tables are read at once instead of at the
//! next tick, and not at all while nothing happens.
//!
//! On every online CPU, `sock:inet_sock_set_state` is opened with the
//! filter `newstate == 10 || (oldstate == 10 && newstate == 7)` (into
//! LISTEN, and LISTEN to CLOSE; not every change out of LISTEN, which
//! includes LISTEN to SYN_RECV, once per incoming connection); with UDP,
//! `syscalls:sys_enter_bind` filtered to inet-sized addresses (a netlink
//! bind, as `ss` and `ip` make all the time, is 12 bytes) and to other
//! threads than ours, and a silent `sys_exit_bind` (`ret == 0`) that says
//! the bind is done. Per CPU, listens have a ring, and the bind pair
//! another (`PERF_EVENT_IOC_SET_OUTPUT` sends the return into the entry's
//! ring), so that a storm of binds pauses only theirs; all the rings share
//! one epoll descriptor: one descriptor for the caller's event loop.
//!
//! A trigger only says *read now*: the tables (sock_diag, /proc) stay the
//! only source of truth, and when a listener is not in them yet (the
//! tracepoint fires before the socket is hashed), they are read again; see
//! [`coalesce`] for that and for storms. Tracepoints are global: a listener
//! in another network namespace wakes us too, and its read finds nothing.
//!
//! Nothing here knows a sockwatch type: the caller maps [`Need`] to its
//! tables and answers [`Expect`] from what it read. Every system call is in
//! [`crate::sys`].
//!
//! Opening proves itself: a listener on 127.0.0.1:0 in our own namespace
//! must produce a record and a wake-up within [`SELF_TEST`] (a tracepoint
//! that opens but never fires exists: `exclude_kernel`, some sandboxes).
//! Every failure is an [`Unavailable`] naming the step and the errno, so
//! that `--detect auto` can say why it moved on.

pub mod coalesce;
pub mod records;
pub mod tracefs;

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use coalesce::{Action, Coalescer, Rings};
pub use coalesce::{Expect, Need};
use records::{Layout, Record};

/// How long the self-test waits for its listener's record.
pub const SELF_TEST: Duration = Duration::from_millis(100);
/// Data pages per ring (16 KiB with 4 KiB pages: about 150 records).
const RING_PAGES: usize = 4;
/// `AF_INET`, `AF_INET6` as tracepoints record them.
pub const AF_INET: u16 = libc::AF_INET as u16;
/// See [`AF_INET`].
pub const AF_INET6: u16 = libc::AF_INET6 as u16;

/// Why kernel triggers cannot be used: the step that failed and its error.
#[derive(Debug)]
pub struct Unavailable {
    /// What was being done (`perf_event_open of sock:inet_sock_set_state
    /// on cpu 0`).
    pub step: String,
    /// The error, with its errno where there is one.
    pub cause: io::Error,
}

impl Unavailable {
    /// The failure of `step`.
    pub fn new(step: String, cause: io::Error) -> Unavailable {
        Unavailable { step, cause }
    }
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.step)?;
        match self.cause.raw_os_error() {
            Some(errno) => {
                let text = io::Error::from_raw_os_error(errno).to_string();
                let text = text
                    .split(" (os error")
                    .next()
                    .unwrap_or(&text)
                    .to_lowercase();
                write!(f, "{} ({text})", errno_name(errno))?;
                if matches!(errno, libc::EACCES | libc::EPERM) {
                    write!(
                        f,
                        "; kernel triggers need root (or CAP_PERFMON and a readable tracefs)"
                    )?;
                }
                Ok(())
            }
            None => write!(f, "{}", self.cause),
        }
    }
}

impl std::error::Error for Unavailable {}

/// The symbolic name of the errors opening can meet.
fn errno_name(errno: i32) -> String {
    match errno {
        libc::EACCES => "EACCES".into(),
        libc::EPERM => "EPERM".into(),
        libc::ENOENT => "ENOENT".into(),
        libc::EINVAL => "EINVAL".into(),
        libc::EEXIST => "EEXIST".into(),
        libc::ENODEV => "ENODEV".into(),
        libc::ENOSYS => "ENOSYS".into(),
        libc::EBUSY => "EBUSY".into(),
        libc::EMFILE => "EMFILE".into(),
        libc::ENOMEM => "ENOMEM".into(),
        libc::EOPNOTSUPP => "EOPNOTSUPP".into(),
        libc::ETIMEDOUT => "ETIMEDOUT".into(),
        other => format!("errno {other}"),
    }
}

/// What to open.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Wake on binds (UDP tables are watched). Listens always wake: the
    /// self-test rests on them.
    pub udp: bool,
}

/// Counts, for `-v` and the benches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Times the descriptor woke the caller.
    pub wakeups: u64,
    /// Records read from the rings.
    pub records: u64,
    /// Reads asked for.
    pub reads: u64,
    /// Times the rings were paused by the bucket.
    pub pauses: u64,
    /// Records the kernel dropped (full or paused rings).
    pub lost: u64,
    /// Expected listeners never found (most likely in another namespace).
    pub gave_up: u64,
}

/// The events of one CPU: `inet_sock_set_state` with a ring of its own;
/// with UDP, the bind pair in a second ring (`sys_exit_bind` redirected
/// into `sys_enter_bind`'s), which a bind storm may pause while listens
/// still wake.
struct Cpu {
    cpu: u32,
    listen: crate::sys::PerfRing,
    bind: Option<crate::sys::PerfRing>,
    /// `sys_exit_bind`, writing into `bind`.
    _exit: Option<OwnedFd>,
}

impl Cpu {
    fn ring(&self, rings: Rings) -> Option<&crate::sys::PerfRing> {
        match rings {
            Rings::Listen => Some(&self.listen),
            Rings::Bind => self.bind.as_ref(),
        }
    }
}

/// Open tracepoints on every online CPU, their rings, and the decisions.
pub struct Trigger {
    layout: Layout,
    /// The filters of the bind events (they name our thread).
    bind_filters: (String, String),
    cpus: Vec<Cpu>,
    inner: Poll,
    events: Events,
    bytes: Vec<u8>,
    records: Vec<Record>,
    coalescer: Coalescer,
    stats: Stats,
    /// Where the tracepoints were found, for `-v`.
    place: String,
}

impl fmt::Debug for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trigger")
            .field("cpus", &self.cpus.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// The filter of `sock:inet_sock_set_state`.
const SET_STATE_FILTER: &str = "newstate == 10 || (oldstate == 10 && newstate == 7)";

impl Trigger {
    /// Finds the tracepoints, opens them on every online CPU, and proves
    /// that they fire.
    pub fn open(config: Config) -> Result<Trigger, Unavailable> {
        let found = tracefs::discover(config.udp)?;
        let tid = crate::sys::thread_id();
        let bind_filters = (
            format!("(addrlen == 16 || addrlen >= 24) && common_pid != {tid}"),
            format!("ret == 0 && common_pid != {tid}"),
        );
        let (enter_bind, exit_bind) = match found.bind {
            Some((enter, exit)) => (Some(enter), Some(exit)),
            None => (None, None),
        };
        let inner =
            Poll::new().map_err(|e| Unavailable::new("creating an epoll descriptor".into(), e))?;
        let mut trigger = Trigger {
            layout: Layout {
                set_state: found.set_state,
                enter_bind,
                exit_bind,
            },
            bind_filters,
            cpus: Vec::new(),
            inner,
            events: Events::with_capacity(64),
            bytes: Vec::new(),
            records: Vec::new(),
            coalescer: Coalescer::new(Instant::now()),
            stats: Stats::default(),
            place: found.place,
        };
        for cpu in online_cpus()
            .map_err(|e| Unavailable::new("reading /sys/devices/system/cpu/online".into(), e))?
        {
            trigger.open_cpu(cpu)?;
        }
        trigger.self_test()?;
        Ok(trigger)
    }

    /// Where the tracepoints were found, for `-v`.
    pub fn place(&self) -> &str {
        &self.place
    }

    fn open_cpu(&mut self, cpu: u32) -> Result<(), Unavailable> {
        let open = |name: &str, id: u64, wake: bool, filter: &str| {
            let fd = crate::sys::perf_tracepoint_open(id, cpu, wake).map_err(|e| {
                Unavailable::new(format!("perf_event_open of {name} on cpu {cpu}"), e)
            })?;
            crate::sys::perf_set_filter(fd.as_fd(), filter).map_err(|e| {
                Unavailable::new(format!("setting the filter '{filter}' on {name}"), e)
            })?;
            Ok::<OwnedFd, Unavailable>(fd)
        };
        let layout = &self.layout;
        let set_state = open(
            "sock:inet_sock_set_state",
            layout.set_state.id,
            true,
            SET_STATE_FILTER,
        )?;
        let map = |event: OwnedFd, what: &str| {
            crate::sys::PerfRing::map(event, RING_PAGES)
                .map_err(|e| Unavailable::new(format!("mapping the {what} ring of cpu {cpu}"), e))
        };
        let listen = map(set_state, "listen")?;
        let (mut bind, mut exit) = (None, None);
        if let (Some(enter_format), Some(exit_format)) = (&layout.enter_bind, &layout.exit_bind) {
            let enter = open(
                "syscalls:sys_enter_bind",
                enter_format.id,
                true,
                &self.bind_filters.0,
            )?;
            let exited = open(
                "syscalls:sys_exit_bind",
                exit_format.id,
                false,
                &self.bind_filters.1,
            )?;
            let ring = map(enter, "bind")?;
            crate::sys::perf_set_output(exited.as_fd(), ring.event()).map_err(|e| {
                Unavailable::new(format!("PERF_EVENT_IOC_SET_OUTPUT on cpu {cpu}"), e)
            })?;
            bind = Some(ring);
            exit = Some(exited);
        }
        let events = [Some(listen.event()), bind.as_ref().map(|r| r.event())]
            .into_iter()
            .flatten()
            .chain(exit.as_ref().map(AsFd::as_fd));
        for event in events {
            crate::sys::perf_enable(event)
                .map_err(|e| Unavailable::new(format!("enabling the events of cpu {cpu}"), e))?;
        }
        let rings = [(Rings::Listen, Some(&listen)), (Rings::Bind, bind.as_ref())];
        for (which, ring) in rings {
            let Some(ring) = ring else { continue };
            let token = Token(2 * cpu as usize + usize::from(which == Rings::Bind));
            self.inner
                .registry()
                .register(
                    &mut SourceFd(&ring.event().as_raw_fd()),
                    token,
                    Interest::READABLE,
                )
                .map_err(|e| Unavailable::new(format!("epoll_ctl for cpu {cpu}"), e))?;
            if self.coalescer.paused(which) {
                let _ = crate::sys::perf_pause_output(ring.event(), true);
            }
        }
        self.cpus.push(Cpu {
            cpu,
            listen,
            bind,
            _exit: exit,
        });
        Ok(())
    }

    /// Listens on 127.0.0.1:0 (or [::1]:0) in our own namespace and waits
    /// for its record to arrive with a wake-up.
    fn self_test(&mut self) -> Result<(), Unavailable> {
        let step = |e| Unavailable::new("self-test: listening on 127.0.0.1:0".into(), e);
        // Closed at once: the record is written during listen(), and other
        // watchers of this namespace should not have the time to see it.
        drop(
            std::net::TcpListener::bind("127.0.0.1:0")
                .or_else(|_| std::net::TcpListener::bind("[::1]:0"))
                .map_err(step)?,
        );
        let tid = crate::sys::thread_id();
        let deadline = Instant::now() + SELF_TEST;
        let mut woken = false;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.inner.poll(&mut self.events, Some(left)) {
                Ok(()) => woken |= !self.events.is_empty(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Unavailable::new("self-test: epoll_wait".into(), e)),
            }
            self.drain();
            let seen = self
                .records
                .iter()
                .any(|r| matches!(*r, Record::Listen { pid, .. } if pid == tid));
            if seen && woken {
                break;
            }
            if Instant::now() >= deadline {
                let what = if seen {
                    "its record came without a wake-up"
                } else {
                    "no record of its listen"
                };
                return Err(Unavailable::new(
                    format!("self-test: listening on 127.0.0.1:0: {what} within {SELF_TEST:?}"),
                    io::Error::from_raw_os_error(libc::ETIMEDOUT),
                ));
            }
        }
        // The first full read, which follows, covers whatever came meanwhile.
        self.drain();
        self.records.clear();
        self.coalescer.clear();
        self.stats = Stats::default();
        Ok(())
    }

    /// The descriptor to wait on: readable when a ring has records that
    /// wake.
    pub fn fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }

    /// Takes every ring's records into `self.records`.
    fn drain(&mut self) {
        self.records.clear();
        for cpu in &mut self.cpus {
            let rings = [(false, Some(&mut cpu.listen)), (true, cpu.bind.as_mut())];
            for (from_bind, ring) in rings {
                let Some(ring) = ring else { continue };
                self.bytes.clear();
                ring.take(&mut self.bytes);
                let first = self.records.len();
                records::parse(&self.bytes, &self.layout, &mut self.records);
                for record in &self.records[first..] {
                    match record {
                        // A bind ring's losses say nothing of listens.
                        Record::Lost(n) if from_bind => {
                            self.stats.lost += n;
                            self.coalescer.lost_binds();
                        }
                        Record::Lost(n) => {
                            self.stats.lost += n;
                            self.coalescer.record(record);
                        }
                        _ => self.coalescer.record(record),
                    }
                }
            }
        }
        self.stats.records += self.records.len() as u64;
    }

    /// The descriptor was readable: takes the records, and says what to read
    /// now, if anything (a storm pauses the rings and schedules the read:
    /// see [`Trigger::next_deadline`]).
    pub fn on_ready(&mut self, now: Instant) -> Option<Need> {
        self.stats.wakeups += 1;
        // Clears the inner epoll's readiness; every ring is drained anyway.
        let _ = self.inner.poll(&mut self.events, Some(Duration::ZERO));
        self.drain();
        self.decide(now)
    }

    fn decide(&mut self, now: Instant) -> Option<Need> {
        loop {
            match self.coalescer.decide(now) {
                Action::Wait => return None,
                Action::Read(need) => {
                    self.stats.reads += 1;
                    return Some(need);
                }
                // Each kind pauses once, then the other may still read.
                Action::Pause(rings) => {
                    self.stats.pauses += 1;
                    self.pause(rings, true);
                }
            }
        }
    }

    fn pause(&mut self, rings: Rings, paused: bool) {
        for ring in self.cpus.iter().filter_map(|cpu| cpu.ring(rings)) {
            // A ring that cannot be paused keeps waking us: the bucket
            // still paces the reads.
            let _ = crate::sys::perf_pause_output(ring.event(), paused);
        }
    }

    /// When [`Trigger::on_deadline`] is next due (a scheduled read, or a
    /// read again for a listener not found yet), if ever.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.coalescer.next_deadline()
    }

    /// A deadline passed: says what to read now, if anything.
    pub fn on_deadline(&mut self, now: Instant) -> Option<Need> {
        for rings in self.coalescer.due(now) {
            self.pause(rings, false);
        }
        // Silent records (a bind's return) wait in the rings.
        self.drain();
        self.decide(now)
    }

    /// After a read asked for by [`Trigger::on_ready`] or
    /// [`Trigger::on_deadline`]: `present` says whether it found a
    /// listener the records announced.
    pub fn after_read(&mut self, now: Instant, present: impl FnMut(&Expect) -> bool) {
        self.coalescer.after_read(now, present);
        self.stats.gave_up = self.coalescer.gave_up;
    }

    /// Opens the events of CPUs that came online, and closes those of CPUs
    /// that went (their events would stay silent). Called at each safety
    /// read.
    pub fn rescan(&mut self) -> Result<(), Unavailable> {
        let online = online_cpus()
            .map_err(|e| Unavailable::new("reading /sys/devices/system/cpu/online".into(), e))?;
        let before = self.cpus.len();
        self.cpus.retain(|c| online.contains(&c.cpu));
        // Dropping a ring closes its descriptor, which leaves the epoll set.
        let added: Vec<u32> = online
            .into_iter()
            .filter(|cpu| !self.cpus.iter().any(|c| c.cpu == *cpu))
            .collect();
        for cpu in &added {
            self.open_cpu(*cpu)?;
        }
        if before != self.cpus.len() || !added.is_empty() {
            // A listen on the new CPU may have come before its ring.
            self.coalescer.record(&Record::Lost(0));
        }
        Ok(())
    }

    /// How many CPUs have rings.
    pub fn cpus(&self) -> usize {
        self.cpus.len()
    }

    /// The counts so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }
}

/// The online CPUs, from `/sys/devices/system/cpu/online` (`0-3,6`).
fn online_cpus() -> io::Result<Vec<u32>> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/online")?;
    parse_cpu_list(&text).ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))
}

fn parse_cpu_list(text: &str) -> Option<Vec<u32>> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let (first, last): (u32, u32) = match part.split_once('-') {
            Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
            None => {
                let one = part.parse().ok()?;
                (one, one)
            }
        };
        if last < first || last - first > 65_536 {
            return None;
        }
        cpus.extend(first..=last);
    }
    (!cpus.is_empty()).then_some(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_lists() {
        assert_eq!(parse_cpu_list("0-1\n"), Some(vec![0, 1]));
        assert_eq!(parse_cpu_list("0,2-4,7"), Some(vec![0, 2, 3, 4, 7]));
        assert_eq!(parse_cpu_list(""), None);
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
    }

    #[test]
    fn says_the_step_and_errno() {
        let e = Unavailable::new(
            "perf_event_open of sock:inet_sock_set_state on cpu 0".into(),
            io::Error::from_raw_os_error(libc::EACCES),
        );
        assert_eq!(
            e.to_string(),
            "perf_event_open of sock:inet_sock_set_state on cpu 0: EACCES (permission denied); \
             kernel triggers need root (or CAP_PERFMON and a readable tracefs)"
        );
    }
}
