//! How a watcher decides to read the tables: every interval (`poll`), when
//! a namespace's socket counters move (`changes`, one gate per namespace),
//! or when a kernel trigger fires (`kernel`, with the counters beside it
//! for what no tracepoint announces and to say which namespace a trigger
//! concerns). The decisions themselves live in [`crate::detect`] and
//! [`crate::trigger`]; here they meet the watcher's sources and snapshot.

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use super::{Options, Snapshot, Watcher};
use crate::detect::{CHANGES_INTERVAL, Gate, KERNEL_SAFETY, PROC_SAFETY, Sockstat};
use crate::endpoint::{Endpoint, Family, Table};
use crate::event::{Event, EventKind};
use crate::trigger::Trigger;

/// The least time between two checks of one namespace's counters when many
/// are watched: about 330 checks a second in all (a check is two preads,
/// about 3.5 µs together, so about 0.12 % of a CPU), however many
/// namespaces. Up to 5 namespaces keep the 15 ms tick; 100 are checked
/// every 300 ms, which is then how late a new listener may be seen.
pub const CHECK_SPACING: Duration = Duration::from_millis(3);

/// How many namespaces share the safety net's base period: beyond, it
/// stretches with their number, so that 100 idle namespaces read their
/// tables about 2.5 times a second in all, not 50 (a UDP dump walks the
/// whole host's hash, whichever namespace asks).
pub(super) const SAFETY_SHARE: u32 = 5;

/// How the watcher decides to read the tables.
pub(super) enum Detection {
    /// Every interval.
    Poll,
    /// When a namespace's socket counters moved, a listener in it closed,
    /// or its safety net is due (see [`crate::detect`]): then that
    /// namespace's tables are read, and only its.
    Changes(Gates),
    /// When a kernel trigger says so (see [`crate::trigger`]), and at a
    /// slow safety net.
    Kernel(Box<Kernel>),
}

/// The change detection of every watched namespace.
pub(super) struct Gates {
    /// One per watched namespace.
    pub(super) list: Vec<Counted>,
    /// The safety net's base period (per namespace, stretched when there
    /// are many: [`SAFETY_SHARE`]).
    pub(super) safety: Duration,
}

impl Gates {
    /// When every namespace's tables are read whatever the counters say,
    /// and how many namespaces there are, for `-v`.
    pub(super) fn describe(&self) -> String {
        let period = self.safety * (self.list.len() as u32 / SAFETY_SHARE).max(1);
        let mut text = format!("at least every {}", humantime::format_duration(period));
        if self.list.len() > 1 {
            let blind = self.list.iter().filter(|g| g.sockstat.is_none()).count();
            text.push_str(&format!(", per namespace ({} namespaces", self.list.len()));
            if blind > 0 {
                text.push_str(&format!(", {blind} without readable counters"));
            }
            text.push(')');
        }
        text
    }
}

/// Kernel-trigger detection: the trigger for inet listeners; for what no
/// tracepoint announces (a unix listener; a close read from /proc, where
/// none is pushed), the socket counters' gates.
pub(super) struct Kernel {
    pub(super) trigger: Trigger,
    /// With unix tables or a table read from /proc: the counters, checked
    /// every tick, and the gates, whose safety net then covers every table.
    pub(super) gates: Option<Gates>,
    /// The loop's tick: without counters, the safety net.
    pub(super) tick: Duration,
    /// When the online CPUs were last looked at.
    pub(super) rescanned: Instant,
}

/// Opens kernel triggers for the tables of `options`, or says why not.
pub(super) fn open_trigger(options: &Options) -> Result<Trigger, String> {
    let inet = |t: &&Table| t.family != Family::Unix;
    if !options.tables.iter().any(|t| inet(&t)) {
        return Err(
            "only unix tables are watched, and no tracepoint announces a unix listener".into(),
        );
    }
    let udp = options
        .tables
        .iter()
        .filter(inet)
        .any(|t| t.transport == crate::endpoint::Transport::Udp);
    Trigger::open(crate::trigger::Config { udp }).map_err(|e| e.to_string())
}

/// The change detection of one namespace.
pub(super) struct Counted {
    /// Its id.
    pub(super) id: u32,
    /// Its counters; `None` where they cannot be read (its tables are then
    /// read as the gate's budget allows).
    pub(super) sockstat: Option<Box<Sockstat>>,
    pub(super) gate: Gate,
}

/// Which namespaces' tables are due to be read.
pub(super) enum Due {
    Nothing,
    All,
    Netns(Vec<u32>),
}

/// Whether a read found a listener a trigger announced: a TCP endpoint of
/// its family on its port among those known now, or, where the port was
/// not known yet, a new TCP endpoint of its family among `new` events.
pub(super) fn found(snapshot: &Snapshot, new: &[Event], expect: &crate::trigger::Expect) -> bool {
    let family = match expect.family {
        crate::trigger::AF_INET => Family::Inet,
        crate::trigger::AF_INET6 => Family::Inet6,
        // Another family (none is filtered in): nothing to look for.
        _ => return true,
    };
    let tcp_of_family = |e: &Endpoint| {
        e.family() == family && e.table().transport == crate::endpoint::Transport::Tcp
    };
    match expect.port {
        Some(port) => snapshot
            .iter()
            .any(|(e, _)| tcp_of_family(e) && e.port() == Some(port)),
        None => new
            .iter()
            .any(|e| e.kind == EventKind::Socket && tcp_of_family(&e.endpoint)),
    }
}

impl Watcher {
    /// Starts the change detection of namespace `id` with what opening it
    /// gave.
    pub(super) fn count(&mut self, id: u32, opened: crate::source::sources::Opened, what: &str) {
        let verbose = self.verbose;
        let Some(gates) = self.gates() else {
            return;
        };
        let sockstat = match opened.counters {
            Some(Ok(sockstat)) => Some(Box::new(sockstat)),
            Some(Err(e)) => {
                if verbose {
                    eprintln!(
                        "sockwatch: cannot read the socket counters of {what} ({e}); reading \
                         the tables every interval instead"
                    );
                }
                None
            }
            None => None,
        };
        let baseline = sockstat.as_ref().map(|s| s.baseline);
        gates.list.push(Counted {
            id,
            sockstat,
            gate: Gate::new(gates.safety, Instant::now(), baseline),
        });
    }

    /// Spreads the namespaces' safety nets over their period, stretched
    /// with their number (see [`SAFETY_SHARE`]), so that their reads do not
    /// come all at once.
    pub(super) fn stagger(&mut self) {
        let Some(gates) = self.gates() else {
            return;
        };
        let n = gates.list.len() as u32;
        let period = gates.safety * (n / SAFETY_SHARE).max(1);
        let now = Instant::now();
        for (i, counted) in gates.list.iter_mut().enumerate() {
            counted.gate.set_safety(period);
            // Their reads together stay within one budget.
            counted.gate.set_share(1.0 / f64::from(n.max(1)));
            if n > 1 {
                counted
                    .gate
                    .set_last_full(now.checked_sub(period * i as u32 / n).unwrap_or(now));
            }
        }
    }

    /// The interval to poll at when the user did not choose one (see
    /// [`Sources::default_interval`]).
    pub fn default_interval(&self, long_running: bool) -> Duration {
        match &self.detection {
            Detection::Changes(_) => CHANGES_INTERVAL,
            Detection::Kernel(kernel) if kernel.gates.is_some() => CHANGES_INTERVAL,
            // Nothing to check between reads: the tick is the safety net.
            Detection::Kernel(_) if self.sources.reads_proc() => PROC_SAFETY,
            Detection::Kernel(_) => KERNEL_SAFETY,
            Detection::Poll => self.sources.default_interval(long_running),
        }
    }

    /// The interval for a caller that reads the tables itself at each
    /// tick (`run`'s readiness checks), where no trigger wakes it.
    pub fn default_self_polled_interval(&self) -> Duration {
        match self.detection {
            Detection::Kernel(_) => CHANGES_INTERVAL,
            _ => self.default_interval(false),
        }
    }

    /// The time between two ticks: `interval`, stretched when many
    /// namespaces' counters are checked each tick (see [`CHECK_SPACING`]).
    pub(super) fn tick(&self, interval: Duration) -> Duration {
        match self.gates_ref() {
            Some(gates) => interval.max(CHECK_SPACING * gates.list.len() as u32),
            None => interval,
        }
    }

    /// The socket counters' gates, where they decide reads.
    pub(super) fn gates(&mut self) -> Option<&mut Gates> {
        match &mut self.detection {
            Detection::Changes(gates) => Some(gates),
            Detection::Kernel(kernel) => kernel.gates.as_mut(),
            Detection::Poll => None,
        }
    }

    /// [`Watcher::gates`], to look at.
    pub(super) fn gates_ref(&self) -> Option<&Gates> {
        match &self.detection {
            Detection::Changes(gates) => Some(gates),
            Detection::Kernel(kernel) => kernel.gates.as_ref(),
            Detection::Poll => None,
        }
    }

    /// How new listeners are noticed, as `--detect` names it.
    pub fn detect_name(&self) -> &'static str {
        match self.detection {
            Detection::Poll => "poll",
            Detection::Changes(_) => "changes",
            Detection::Kernel(_) => "kernel",
        }
    }

    /// How new listeners are noticed, for `-v`.
    pub fn describe_detection(&self) -> String {
        match &self.detection {
            Detection::Poll => "new listeners by reading the tables every interval".into(),
            Detection::Changes(gates) => format!(
                "new listeners by socket counters (net/sockstat), reading the tables when \
                 they move and {}",
                gates.describe()
            ),
            Detection::Kernel(kernel) => {
                let mut text = format!(
                    "new listeners by kernel triggers (perf tracepoints on listen and bind, \
                     {} CPU(s), read from {}), reading the tables at once",
                    kernel.trigger.cpus(),
                    kernel.trigger.place()
                );
                match &kernel.gates {
                    Some(gates) => text.push_str(&format!(
                        "; what no tracepoint announces (unix listeners, closes read from \
                         /proc) by socket counters (net/sockstat) every {}; every table {}",
                        humantime::format_duration(kernel.tick),
                        gates.describe()
                    )),
                    None => text.push_str(&format!(
                        " and at least every {}",
                        humantime::format_duration(kernel.tick)
                    )),
                }
                text
            }
        }
    }

    /// The kernel trigger's descriptor, when detection uses one.
    pub(super) fn trigger_fd(&self) -> Option<RawFd> {
        match &self.detection {
            Detection::Kernel(kernel) => Some(kernel.trigger.fd()),
            _ => None,
        }
    }

    /// When the kernel trigger next wants a read (scheduled after a storm,
    /// or again for a listener not found yet).
    pub(super) fn trigger_deadline(&self) -> Option<Instant> {
        match &self.detection {
            Detection::Kernel(kernel) => kernel.trigger.next_deadline(),
            _ => None,
        }
    }

    /// The kernel trigger woke us (`woken`) or its deadline passed: reads
    /// the tables if it says so, then tells it which of the listeners its
    /// records announced the read found. Tracepoints are global: a trigger
    /// reads every watched namespace.
    pub(super) fn kernel_read(
        &mut self,
        woken: bool,
        events: &mut Vec<Event>,
    ) -> anyhow::Result<()> {
        let Detection::Kernel(kernel) = &mut self.detection else {
            return Ok(());
        };
        let now = Instant::now();
        let need = if woken {
            kernel.trigger.on_ready(now)
        } else {
            kernel.trigger.on_deadline(now)
        };
        if need.is_none() {
            return Ok(());
        }
        // Where the counters are kept, they say which namespaces the
        // trigger concerns (a listener not hashed yet moves none: it is
        // looked for again on the trigger's schedule), and their gates keep
        // the reads within the budget (a storm of listens elsewhere, each
        // costing a /proc read). Without counters, every table is read.
        let first = events.len();
        match self.read_due() {
            Due::All => self.poll(events)?,
            Due::Netns(ids) => self.poll_netns(events, Some(&ids))?,
            Due::Nothing => {}
        }
        let Detection::Kernel(kernel) = &mut self.detection else {
            return Ok(());
        };
        let (snapshot, new) = (&self.snapshot, &events[first..]);
        kernel
            .trigger
            .after_read(Instant::now(), |expect| found(snapshot, new, expect));
        Ok(())
    }

    /// Which namespaces' tables should be read now: all when polling; with
    /// `changes`, those whose counters moved (or where a close or the
    /// safety net asks).
    pub(super) fn read_due(&mut self) -> Due {
        if let Detection::Kernel(kernel) = &mut self.detection
            && kernel.rescanned.elapsed() >= KERNEL_SAFETY
        {
            kernel.rescanned = Instant::now();
            // CPUs that came online get rings of their own.
            if let Err(e) = kernel.trigger.rescan()
                && self.verbose
            {
                eprintln!("sockwatch: kernel triggers: {e}");
            }
        }
        let mut checks = 0;
        let due = match self.gates() {
            // Polling, or kernel triggers without counters: every tick is
            // the safety net.
            None => Due::All,
            Some(gates) => {
                let now = Instant::now();
                let mut due = Vec::new();
                for counted in gates.list.iter_mut() {
                    checks += 1;
                    let counters = counted.sockstat.as_mut().and_then(|s| s.read().ok());
                    if counted.gate.check(now, counters).is_some() {
                        due.push(counted.id);
                    }
                }
                if due.is_empty() {
                    Due::Nothing
                } else if due.len() == gates.list.len() {
                    Due::All
                } else {
                    Due::Netns(due)
                }
            }
        };
        self.checks += checks;
        due
    }
}
