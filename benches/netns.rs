//! Many network namespaces (issue 13's numbers): idle cost, poll cost and
//! appear latency of sockwatch watching 1, 10 and 100 namespaces at once,
//! beside one sockwatch per namespace and `ss` run in each namespace.
//!
//! Each namespace is made with `ip netns add` (named `swb-<pid>-<n>-<i>`, so
//! that runs, and the tests, never meet), has `lo` up and four listeners
//! (TCP 0.0.0.0:80, 0.0.0.0:443, 127.0.0.1:8080, UDP 0.0.0.0:53) held by a
//! process of its own, as a container's would be: this binary run again
//! with `SWB_HOLD` set, which enters the namespace, binds, and waits for its
//! stdin to close. One process per namespace costs a few fds here, not the
//! listeners' (RLIMIT_NOFILE may be 20,000 and cannot be raised), and gives
//! `--all-netns` (and `--netns /proc/PID/ns/net`) a process to find.
//!
//! Everything made is removed at the end, on panic (a Drop guard) and on
//! SIGINT, SIGTERM or SIGHUP; holders and watches die with this process
//! (`PR_SET_PDEATHSIG`); namespaces left by a run killed outright are
//! removed by the next run.
//!
//! Beside them, a thread of the bench that only checks every namespace's
//! socket counters (sockwatch's own reader) every 15 ms: what change
//! detection across many namespaces in one process costs at the least.
//!
//! Run: `cargo bench --bench netns` (as root). NAMESPACES=1,10,100 the
//! group sizes, SECONDS=10 the idle window, TRIALS=30 the latency trials,
//! LISTS=9 the `list` invocations per median, MODES=netns,all-netns,
//! per-netns,counters,ss the rows. A binary that refuses `--all-netns`
//! gives rows that say so, not a failure.

#[path = "support/timing.rs"]
mod timing;

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};
use timing::{lines_of, thread_cpu};

/// Set in the environment of a holder: the namespace file it enters.
const HOLD: &str = "SWB_HOLD";
/// Listeners each holder keeps: TCP, then UDP.
const TCP_LISTENERS: [&str; 3] = ["0.0.0.0:80", "0.0.0.0:443", "127.0.0.1:8080"];
const UDP_LISTENERS: [&str; 1] = ["0.0.0.0:53"];
const PER_NAMESPACE: usize = TCP_LISTENERS.len() + UDP_LISTENERS.len();
/// sockwatch's default `--interval` with `--detect changes`: the pace a
/// loop of `ss` would have to keep for a comparable latency.
const DEFAULT_INTERVAL: Duration = Duration::from_millis(15);
/// How long a watch may take to start and list the namespaces' listeners.
const START_DEADLINE: Duration = Duration::from_secs(60);
/// How long a trial waits for its event before counting it as missed.
const EVENT_DEADLINE: Duration = Duration::from_secs(10);

/// Namespaces made and not yet removed, for the signal handler.
static MADE: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn made() -> std::sync::MutexGuard<'static, Vec<String>> {
    MADE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `ip netns del` each of `names` and forget them.
fn remove_namespaces(names: &[String]) {
    for name in names {
        let _ = Command::new("ip")
            .args(["netns", "del", name])
            .stderr(Stdio::null())
            .status();
    }
    made().retain(|n| !names.contains(n));
}

/// Removes namespaces of earlier runs whose process is gone (a run killed
/// with SIGKILL cannot clean up after itself).
fn remove_stale_namespaces() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    let stale: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| {
            let pid = name.strip_prefix("swb-").and_then(|r| r.split('-').next());
            pid.is_some_and(|pid| {
                pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists()
            })
        })
        .collect();
    if !stale.is_empty() {
        eprintln!(
            "netns: removing {} namespaces left by killed runs",
            stale.len()
        );
        remove_namespaces(&stale);
    }
}

/// On SIGINT, SIGTERM or SIGHUP: remove what was made, then exit (holders
/// and watches get their parent-death signal).
fn clean_up_on_signals() {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]).unwrap();
    thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            eprintln!("netns: signal {signal}: removing the namespaces made");
            let names = made().clone();
            remove_namespaces(&names);
            std::process::exit(128 + signal);
        }
    });
}

/// Makes `command`'s process die when this one does (with the thread that
/// spawned it: spawn only from the main thread).
fn die_with_us(command: &mut Command) -> &mut Command {
    // SAFETY: prctl is async-signal-safe and touches nothing of ours; the
    // closure runs in the child between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// Moves the calling thread into the network namespace at `file`.
fn enter(file: &Path) {
    let target = File::open(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    // SAFETY: setns takes a descriptor we own for the call and a flag; it
    // changes the calling thread's network namespace only.
    let done = unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(
        done,
        0,
        "setns {}: {}",
        file.display(),
        std::io::Error::last_os_error()
    );
}

/// The holder's life: enter, bind, say so, and wait for stdin to close.
fn hold(file: &str) -> ! {
    enter(Path::new(file));
    let tcp: Vec<TcpListener> = TCP_LISTENERS
        .iter()
        .map(|a| TcpListener::bind(a).unwrap())
        .collect();
    let udp: Vec<UdpSocket> = UDP_LISTENERS
        .iter()
        .map(|a| UdpSocket::bind(a).unwrap())
        .collect();
    let mut out = std::io::stdout();
    writeln!(out, "ready").unwrap();
    out.flush().unwrap();
    let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
    drop((tcp, udp));
    std::process::exit(0)
}

/// One namespace and the process holding its listeners.
struct Namespace {
    name: String,
    /// `/run/netns/<name>`.
    file: PathBuf,
    holder: Child,
    /// Closing it ends the holder.
    holder_stdin: Option<ChildStdin>,
}

impl Namespace {
    /// The holder's own namespace file: the namespace reached by a path,
    /// with a process behind it.
    fn proc_file(&self) -> String {
        format!("/proc/{}/ns/net", self.holder.id())
    }
}

/// A group of namespaces, removed when dropped.
struct Namespaces(Vec<Namespace>);

impl Namespaces {
    fn make(n: usize) -> Namespaces {
        let started = Instant::now();
        let mut group = Namespaces(Vec::new());
        for i in 0..n {
            let name = format!("swb-{}-{n}-{i}", std::process::id());
            made().push(name.clone());
            run_ok(Command::new("ip").args(["netns", "add", &name]));
            run_ok(Command::new("ip").args(["-n", &name, "link", "set", "lo", "up"]));
            let file = Path::new("/run/netns").join(&name);
            let mut holder = die_with_us(
                Command::new(std::env::current_exe().unwrap())
                    .env(HOLD, &file)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped()),
            )
            .spawn()
            .unwrap();
            let holder_stdin = holder.stdin.take();
            group.0.push(Namespace {
                name,
                file,
                holder,
                holder_stdin,
            });
        }
        for ns in &mut group.0 {
            // A holder binds and says so, or panics and closes its stdout.
            let mut line = String::new();
            let stdout = ns.holder.stdout.take().unwrap();
            BufReader::new(stdout).read_line(&mut line).unwrap();
            assert_eq!(line, "ready\n", "holder of {} did not start", ns.name);
        }
        eprintln!("netns: {n} namespaces made in {:?}", started.elapsed());
        group
    }

    fn names(&self) -> Vec<String> {
        self.0.iter().map(|ns| ns.name.clone()).collect()
    }

    /// `--netns NS1 --netns NS2 ...`.
    fn netns_args(&self) -> Vec<String> {
        self.0
            .iter()
            .flat_map(|ns| ["--netns".to_string(), ns.name.clone()])
            .collect()
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &mut self.0 {
            drop(ns.holder_stdin.take());
            let _ = ns.holder.kill();
            let _ = ns.holder.wait();
        }
        remove_namespaces(&self.names());
    }
}

fn run_ok(command: &mut Command) {
    let status = command.status().unwrap();
    assert!(status.success(), "{command:?}: {status}");
}

/// A `sockwatch -v watch ...` running, its stdout lines (with the instant
/// each was read) and stderr lines coming through channels.
struct Watch {
    child: Child,
    lines: Receiver<(String, Instant)>,
    stderr: Receiver<String>,
    said: Vec<String>,
    /// When it said it was watching (its first answer).
    ready_at: Instant,
}

/// What a watch said when it stopped.
#[derive(Default, Clone, Copy)]
struct Reads {
    /// Reads of the tables since the first answer.
    tables: u64,
    /// Checks of the socket counters.
    counters: u64,
    /// Seconds from the first answer to the stop.
    seconds: f64,
}

impl Watch {
    /// Starts `sockwatch -v watch ARGS` and waits until it has answered
    /// once and listed every listener of the namespaces named `expected`;
    /// Err with what it said if it exits or takes too long.
    fn start(args: &[String], expected: &[String]) -> Result<Watch, String> {
        let mut child = die_with_us(
            Command::new(env!("CARGO_BIN_EXE_sockwatch"))
                .args(["-v", "watch"])
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )
        .spawn()
        .unwrap();
        let lines = lines_of(&mut child);
        let (send, stderr) = mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let mut watch = Watch {
            child,
            lines,
            stderr,
            said: Vec::new(),
            ready_at: Instant::now(),
        };
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            match watch.stderr.recv_timeout(left(deadline)) {
                Ok(line) => {
                    let ready = line.contains("endpoint(s) listening");
                    watch.said.push(line);
                    if ready {
                        watch.ready_at = Instant::now();
                        break;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = watch.child.wait().unwrap();
                    return Err(refused(status, &watch.said));
                }
                Err(RecvTimeoutError::Timeout) => {
                    watch.stop();
                    return Err(format!("no first answer in {START_DEADLINE:?}"));
                }
            }
        }
        // The first answer lists what was there: every listener of ours.
        let ours: HashSet<&str> = expected.iter().map(String::as_str).collect();
        let mut listed = 0;
        while listed < ours.len() * PER_NAMESPACE {
            match watch.lines.recv_timeout(left(deadline)) {
                Ok((line, _)) => {
                    let fields = Fields::of(&line);
                    if fields.kind == "socket" && fields.netns.is_some_and(|n| ours.contains(n)) {
                        listed += 1;
                    }
                }
                Err(_) => {
                    watch.stop();
                    return Err(format!(
                        "listed {listed} of the {} listeners",
                        ours.len() * PER_NAMESPACE
                    ));
                }
            }
        }
        Ok(watch)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGINT (so that `-v` reports its reads), then the reads it reported.
    fn stop(mut self) -> Reads {
        let seconds = self.ready_at.elapsed().as_secs_f64();
        // SAFETY: kill takes a pid and a signal; the pid is our child,
        // not yet waited for.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            thread::sleep(Duration::from_millis(10));
        }
        self.said.extend(self.stderr.iter());
        let mut reads = Reads {
            seconds,
            ..Reads::default()
        };
        // "read the tables 43 time(s), 39 since the first answer; checked
        // the socket counters 0 time(s)"
        if let Some(line) = self.said.iter().find(|l| l.contains("read the tables")) {
            let words: Vec<&str> = line.split_whitespace().collect();
            let after = |word: &str, offset: isize| {
                let at = words.iter().position(|w| *w == word)?;
                words.get(at.checked_add_signed(offset)?)?.parse().ok()
            };
            reads.tables = after("since", -1).unwrap_or(0);
            reads.counters = after("counters", 1).unwrap_or(0);
        }
        reads
    }
}

/// Why sockwatch ended early: its exit status and the first thing it said.
fn refused(status: std::process::ExitStatus, said: &[String]) -> String {
    let first = said.iter().find(|l| !l.trim().is_empty());
    let status = match status.code() {
        Some(code) => format!("sockwatch exit {code}"),
        None => status.to_string(),
    };
    format!("{status}, {:?}", first.map_or("", |l| l.trim()))
}

fn left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// What a trial looks at in an event line.
struct Fields<'a> {
    kind: &'a str,
    port: Option<&'a str>,
    netns: Option<&'a str>,
}

impl Fields<'_> {
    fn of(line: &str) -> Fields<'_> {
        let mut words = line.split_whitespace();
        let kind = words.next().unwrap_or("");
        let (mut port, mut netns) = (None, None);
        for word in words {
            if let Some(p) = word.strip_prefix("PORT=") {
                port = Some(p);
            } else if let Some(n) = word.strip_prefix("NETNS=") {
                netns = Some(n);
            }
        }
        Fields { kind, port, netns }
    }
}

/// CPU time of a process and all its threads: the sum of the threads'
/// `schedstat` (nanoseconds), and `utime + stime` from `stat` (clock ticks,
/// which also counts threads that have exited).
#[derive(Default, Clone, Copy)]
struct Cpu {
    schedstat: Duration,
    ticks: u64,
}

impl Cpu {
    fn of(pid: u32) -> Cpu {
        let mut schedstat = Duration::ZERO;
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for task in tasks.filter_map(Result::ok) {
                if let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) {
                    let ns: u64 = text
                        .split_whitespace()
                        .next()
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                    schedstat += Duration::from_nanos(ns);
                }
            }
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the command name, which is in parentheses and may
        // hold spaces: state is field 3, utime 14, stime 15.
        let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<u64> = rest
            .split_whitespace()
            .skip(1)
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        let ticks = fields.get(10).unwrap_or(&0) + fields.get(11).unwrap_or(&0);
        Cpu { schedstat, ticks }
    }

    fn sum(pids: &[u32]) -> Cpu {
        pids.iter()
            .map(|&p| Cpu::of(p))
            .fold(Cpu::default(), |a, b| Cpu {
                schedstat: a.schedstat + b.schedstat,
                ticks: a.ticks + b.ticks,
            })
    }
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf takes a name and has no other effect.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// CPU time of reaped children so far (user + system).
fn children_cpu() -> Duration {
    // SAFETY: rusage is plain data that getrusage fills in.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// Distinct network namespaces on the host, as `--all-netns` finds them:
/// `/proc/*/ns/net` and `/run/netns`.
fn host_namespaces() -> usize {
    let mut inodes = HashSet::new();
    let procs = std::fs::read_dir("/proc").into_iter().flatten();
    let named = std::fs::read_dir("/run/netns").into_iter().flatten();
    for entry in procs.filter_map(Result::ok) {
        if let Ok(meta) = std::fs::metadata(entry.path().join("ns/net")) {
            inodes.insert(meta.ino());
        }
    }
    for entry in named.filter_map(Result::ok) {
        if let Ok(meta) = std::fs::metadata(entry.path()) {
            inodes.insert(meta.ino());
        }
    }
    inodes.len()
}

/// The settings of a run, from the environment.
struct Settings {
    sizes: Vec<usize>,
    seconds: u64,
    trials: usize,
    lists: usize,
    modes: Vec<String>,
}

impl Settings {
    fn from_env() -> Settings {
        let var = |name: &str, default: &str| std::env::var(name).unwrap_or(default.into());
        let number = |name: &str, default: u64| {
            let text = var(name, &default.to_string());
            text.parse::<u64>()
                .unwrap_or_else(|_| panic!("{name}={text}: expected a number"))
        };
        let sizes = var("NAMESPACES", "1,10,100")
            .split(',')
            .map(|n| {
                n.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("NAMESPACES: {n:?} is not a number"))
            })
            .collect();
        let modes: Vec<String> = var("MODES", "netns,all-netns,per-netns,counters,ss")
            .split(',')
            .map(|m| m.trim().to_string())
            .collect();
        for mode in &modes {
            assert!(
                ["netns", "all-netns", "per-netns", "counters", "ss"].contains(&mode.as_str()),
                "MODES: unknown mode {mode:?} (netns, all-netns, per-netns, counters, ss)"
            );
        }
        Settings {
            sizes,
            seconds: number("SECONDS", 10),
            trials: number("TRIALS", 30) as usize,
            lists: number("LISTS", 9).max(1) as usize,
            modes,
        }
    }

    fn wants(&self, mode: &str) -> bool {
        self.modes.iter().any(|m| m == mode)
    }

    fn command(&self) -> String {
        let sizes: Vec<String> = self.sizes.iter().map(ToString::to_string).collect();
        format!(
            "NAMESPACES={} SECONDS={} TRIALS={} LISTS={} MODES={} cargo bench --bench netns",
            sizes.join(","),
            self.seconds,
            self.trials,
            self.lists,
            self.modes.join(",")
        )
    }
}

/// A row of the idle table.
struct Idle {
    n: usize,
    watcher: String,
    processes: usize,
    outcome: Result<IdleCost, String>,
}

/// A row of the idle table measured in a thread of the bench.
struct Estimate {
    n: usize,
    what: String,
    cpu: Duration,
    window: Duration,
}

struct IdleCost {
    cpu: Cpu,
    window: Duration,
    /// Reads of the tables and checks of the counters per second, summed
    /// over the watches.
    reads_per_second: f64,
    checks_per_second: f64,
    rss_kib: u64,
}

/// Starts one watch per (arguments, namespaces it must list), waits,
/// measures their summed CPU over `window`, stops them.
fn idle(runs: &[(Vec<String>, Vec<String>)], window: Duration) -> Result<IdleCost, String> {
    let mut watches = Vec::new();
    for (args, expected) in runs {
        match Watch::start(args, expected) {
            Ok(watch) => watches.push(watch),
            Err(why) => {
                for watch in watches {
                    watch.stop();
                }
                return Err(why);
            }
        }
    }
    thread::sleep(Duration::from_secs(1)); // past start-up
    let pids: Vec<u32> = watches.iter().map(Watch::pid).collect();
    let before = Cpu::sum(&pids);
    thread::sleep(window);
    let after = Cpu::sum(&pids);
    let rss_kib = pids.iter().map(|&p| peak_rss_kib(p)).sum();
    let (mut reads_per_second, mut checks_per_second) = (0.0, 0.0);
    for watch in watches {
        let reads = watch.stop();
        reads_per_second += reads.tables as f64 / reads.seconds;
        checks_per_second += reads.counters as f64 / reads.seconds;
    }
    Ok(IdleCost {
        cpu: Cpu {
            schedstat: after.schedstat - before.schedstat,
            ticks: after.ticks - before.ticks,
        },
        window,
        reads_per_second,
        checks_per_second,
        rss_kib,
    })
}

/// How `ss` reaches a namespace.
#[derive(Clone, Copy)]
enum Ss {
    /// `ip netns exec NS ss -ltnu`: what a script would write (ip also
    /// makes a mount namespace and mounts /sys for the command).
    IpNetnsExec,
    /// `ss -N NS -ltnu`: ss enters the namespace itself.
    DashN,
}

impl Ss {
    fn command(self, netns: &str) -> Command {
        let mut command;
        match self {
            Ss::IpNetnsExec => {
                command = Command::new("ip");
                command.args(["netns", "exec", netns, "ss", "-ltnu"]);
            }
            Ss::DashN => {
                command = Command::new("ss");
                command.args(["-N", netns, "-ltnu"]);
            }
        }
        command
    }

    fn label(self) -> &'static str {
        match self {
            Ss::IpNetnsExec => "ip netns exec NSi ss -ltnu",
            Ss::DashN => "ss -N NSi -ltnu",
        }
    }
}

/// What one process pays to check the socket counters of every namespace
/// of `roots` (`/proc/<pid>` of a process in each) every
/// [`DEFAULT_INTERVAL`], through sockwatch's own reader, and nothing else:
/// a lower bound for change detection in many namespaces from one watch.
/// No roots: the cost of waking up alone. CPU time of the thread.
fn counters_alone(roots: &[PathBuf], window: Duration) -> Duration {
    let roots = roots.to_vec();
    thread::spawn(move || {
        let mut counters: Vec<sockwatch::detect::Sockstat> = roots
            .iter()
            .map(|root| sockwatch::detect::Sockstat::open(root, true).unwrap())
            .collect();
        // Woken as sockwatch is, by epoll_wait's timeout.
        let mut poll = mio::Poll::new().unwrap();
        let mut events = mio::Events::with_capacity(4);
        let start = thread_cpu();
        let began = Instant::now();
        while began.elapsed() < window {
            poll.poll(&mut events, Some(DEFAULT_INTERVAL)).unwrap();
            for sockstat in &mut counters {
                sockstat.read().unwrap();
            }
        }
        thread_cpu() - start
    })
    .join()
    .unwrap()
}

/// A row of the sweep table: `ss` in every namespace, one after another.
struct Sweep {
    n: usize,
    ss: Ss,
    wall: Duration,
    cpu: Duration,
}

fn sweep(group: &Namespaces, ss: Ss, repeats: usize) -> Sweep {
    let mut walls = Vec::new();
    let mut cpus = Vec::new();
    for _ in 0..repeats {
        let cpu = children_cpu();
        let began = Instant::now();
        for ns in &group.0 {
            run_ok(ss.command(&ns.name).stdout(Stdio::null()));
        }
        walls.push(began.elapsed());
        cpus.push(children_cpu() - cpu);
    }
    Sweep {
        n: group.0.len(),
        ss,
        wall: median(&mut walls),
        cpu: median(&mut cpus),
    }
}

/// What `ss` lists in a namespace: its four listeners (a check that the
/// comparator sees what sockwatch sees).
fn check_ss(ns: &Namespace) {
    let out = Command::new("ss")
        .args(["-N", &ns.name, "-ltnuH"])
        .output()
        .unwrap();
    let rows = String::from_utf8_lossy(&out.stdout).lines().count();
    assert_eq!(rows, PER_NAMESPACE, "ss -N {} -ltnuH", ns.name);
}

/// A row of the poll and latency table.
struct Poll {
    n: usize,
    mode: String,
    list: Result<(Duration, Duration), String>,
    latency: Result<Latency, String>,
}

struct Latency {
    appear: Vec<Duration>,
    close: Vec<Duration>,
    trials: usize,
}

/// `sockwatch list ARGS` `lists` times: median wall and CPU time.
fn list(args: &[String], lists: usize, group: &Namespaces) -> Result<(Duration, Duration), String> {
    let mut walls = Vec::new();
    let mut cpus = Vec::new();
    for _ in 0..lists {
        let cpu = children_cpu();
        let began = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_sockwatch"))
            .arg("list")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        walls.push(began.elapsed());
        cpus.push(children_cpu() - cpu);
        if !out.status.success() {
            let said = String::from_utf8_lossy(&out.stderr);
            let said: Vec<String> = said.lines().map(String::from).collect();
            return Err(refused(out.status, &said));
        }
        let ours: HashSet<String> = group.names().into_iter().collect();
        let listed = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| Fields::of(l).netns.is_some_and(|n| ours.contains(n)))
            .count();
        if listed != ours.len() * PER_NAMESPACE {
            return Err(format!(
                "listed {listed} of the {} listeners",
                ours.len() * PER_NAMESPACE
            ));
        }
    }
    Ok((median(&mut walls), median(&mut cpus)))
}

/// A tiny LCG: which namespace a trial listens in, and jitter between
/// trials so that `listen()` falls at every phase of the watch's timer.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 11
    }

    fn below(&mut self, limit: Duration) -> Duration {
        limit.mul_f64(self.next() as f64 / (1u64 << 53) as f64)
    }

    fn index(&mut self, len: usize) -> usize {
        (self.next() % len as u64) as usize
    }
}

/// A TCP listener on 127.0.0.1:`port` in the namespace at `file`, made by
/// a thread that enters it, and the instant `listen()` returned.
fn listen_in(file: &Path, port: u16) -> (TcpListener, Instant) {
    thread::scope(|s| {
        s.spawn(|| {
            enter(file);
            let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
            (listener, Instant::now())
        })
        .join()
        .unwrap()
    })
}

/// Waits for a `kind` event of `port` in `netns` on the watch's stdout;
/// the instant its line was read, or None past the deadline.
fn event(watch: &Watch, kind: &str, port: u16, netns: &str) -> Option<Instant> {
    let deadline = Instant::now() + EVENT_DEADLINE;
    let port = port.to_string();
    loop {
        let (line, at) = watch.lines.recv_timeout(left(deadline)).ok()?;
        let fields = Fields::of(&line);
        if fields.kind == kind && fields.port == Some(&port) && fields.netns == Some(netns) {
            return Some(at);
        }
    }
}

/// Listeners made in random namespaces of `group` and closed again: how
/// soon the watch started with `args` prints each.
fn latency(args: &[String], group: &Namespaces, trials: usize) -> Result<Latency, String> {
    let watch = Watch::start(args, &group.names())?;
    let mut lcg = Lcg(0x5eed ^ group.0.len() as u64);
    let mut result = Latency {
        appear: Vec::new(),
        close: Vec::new(),
        trials,
    };
    for i in 0..trials {
        // Longer than the default poll interval (50 ms), so that every
        // phase of either timer is met.
        thread::sleep(lcg.below(Duration::from_millis(100)));
        let ns = &group.0[lcg.index(group.0.len())];
        let port = 30_000 + i as u16;
        let (listener, listening) = listen_in(&ns.file, port);
        if let Some(seen) = event(&watch, "socket", port, &ns.name) {
            result.appear.push(seen - listening);
        }
        thread::sleep(lcg.below(Duration::from_millis(100)));
        let closing = Instant::now();
        drop(listener);
        if let Some(seen) = event(&watch, "socket-closed", port, &ns.name) {
            result.close.push(seen - closing);
        }
    }
    watch.stop();
    Ok(result)
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// "p50 | p99 | max | seen/trials" of `samples`.
fn spread(samples: &mut [Duration], trials: usize) -> String {
    samples.sort_unstable();
    if samples.is_empty() {
        return format!("- | - | - | 0/{trials}");
    }
    format!(
        "{} | {} | {} | {}/{trials}",
        ms(percentile(samples, 0.5)),
        ms(percentile(samples, 0.99)),
        ms(*samples.last().unwrap()),
        samples.len()
    )
}

fn main() {
    if let Some(file) = std::env::var_os(HOLD) {
        hold(&file.to_string_lossy());
    }
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` and `cargo bench -- --list` probe
    }
    let settings = Settings::from_env();
    let window = Duration::from_secs(settings.seconds);
    clean_up_on_signals();
    remove_stale_namespaces();
    let all_netns = vec!["--all-netns".to_string()];
    let (mut idles, mut sweeps, mut polls) = (Vec::new(), Vec::new(), Vec::new());
    let mut estimates = Vec::new();
    if settings.wants("counters") {
        eprintln!("netns: a thread that only wakes");
        estimates.push(Estimate {
            n: 0,
            what: format!(
                "floor: a thread that only wakes every {} ms (epoll_wait)",
                DEFAULT_INTERVAL.as_millis()
            ),
            cpu: counters_alone(&[], window),
            window,
        });
    }
    for &n in &settings.sizes {
        let group = Namespaces::make(n);
        if settings.wants("netns") {
            eprintln!("netns: N={n}: one watch --netns x{n}");
            idles.push(Idle {
                n,
                watcher: format!("sockwatch watch {}", netns_list(n)),
                processes: 1,
                outcome: idle(&[(group.netns_args(), group.names())], window),
            });
        }
        if settings.wants("all-netns") {
            eprintln!("netns: N={n}: one watch --all-netns");
            let outcome = idle(&[(all_netns.clone(), group.names())], window);
            idles.push(Idle {
                n,
                watcher: format!(
                    "sockwatch watch --all-netns ({} namespaces on the host)",
                    host_namespaces()
                ),
                processes: 1,
                outcome,
            });
        }
        if settings.wants("per-netns") {
            eprintln!("netns: N={n}: one watch per namespace, by name");
            let by_name: Vec<_> = group
                .0
                .iter()
                .map(|ns| {
                    (
                        vec!["--netns".into(), ns.name.clone()],
                        vec![ns.name.clone()],
                    )
                })
                .collect();
            idles.push(Idle {
                n,
                watcher: "sockwatch watch --netns NSi, one per namespace".into(),
                processes: n,
                outcome: idle(&by_name, window),
            });
            eprintln!("netns: N={n}: one watch per namespace, by its holder's path");
            let by_path: Vec<_> = group
                .0
                .iter()
                .map(|ns| {
                    (
                        vec!["--netns".into(), ns.proc_file()],
                        vec![ns.name.clone()],
                    )
                })
                .collect();
            idles.push(Idle {
                n,
                watcher: "sockwatch watch --netns /proc/PIDi/ns/net, one per namespace".into(),
                processes: n,
                outcome: idle(&by_path, window),
            });
        }
        if settings.wants("counters") {
            eprintln!("netns: N={n}: the counters alone");
            let roots: Vec<PathBuf> = group
                .0
                .iter()
                .map(|ns| Path::new("/proc").join(ns.holder.id().to_string()))
                .collect();
            estimates.push(Estimate {
                n,
                what: format!(
                    "a thread that reads net/sockstat and sockstat6 of each namespace every {} ms \
                     (sockwatch::detect::Sockstat, through /proc/PID of its holder)",
                    DEFAULT_INTERVAL.as_millis()
                ),
                cpu: counters_alone(&roots, window),
                window,
            });
        }
        if settings.wants("ss") {
            eprintln!("netns: N={n}: ss sweeps");
            check_ss(&group.0[0]);
            sweeps.push(sweep(&group, Ss::IpNetnsExec, 3));
            sweeps.push(sweep(&group, Ss::DashN, 3));
        }
        if settings.wants("netns") {
            eprintln!("netns: N={n}: list and latency, --netns x{n}");
            polls.push(Poll {
                n,
                mode: netns_list(n),
                list: list(&group.netns_args(), settings.lists, &group),
                latency: latency(&group.netns_args(), &group, settings.trials),
            });
        }
        if settings.wants("all-netns") {
            eprintln!("netns: N={n}: list and latency, --all-netns");
            polls.push(Poll {
                n,
                mode: "--all-netns".into(),
                list: list(&all_netns, settings.lists, &group),
                latency: latency(&all_netns, &group, settings.trials),
            });
        }
        drop(group);
    }
    report(&settings, &idles, &estimates, &sweeps, &polls);
}

/// How the command line of one watch of `n` namespaces is written.
fn netns_list(n: usize) -> String {
    match n {
        1 => "--netns NS1".into(),
        2 => "--netns NS1 --netns NS2".into(),
        n => format!("--netns NS1 … --netns NS{n}"),
    }
}

fn report(
    settings: &Settings,
    idles: &[Idle],
    estimates: &[Estimate],
    sweeps: &[Sweep],
    polls: &[Poll],
) {
    println!("`{}`", settings.command());
    println!();
    println!(
        "Each namespace: lo up, TCP 0.0.0.0:80, 0.0.0.0:443, 127.0.0.1:8080 and \
         UDP 0.0.0.0:53, held by one process in it; sockwatch at its default \
         interval and detection. Target: 100 idle namespaces ≤ 0.5 % of a CPU."
    );
    if !idles.is_empty() {
        println!();
        println!(
            "Idle, {} s each after 1 s of start-up; CPU of every thread from \
             schedstat, and from utime+stime (clock ticks) for comparison",
            settings.seconds
        );
        println!();
        println!(
            "| N | watcher | processes | CPU per second | share of one CPU | utime+stime | table reads/s | counter checks/s | peak RSS (sum) |"
        );
        println!("|---|---|---|---|---|---|---|---|---|");
        for row in idles {
            match &row.outcome {
                Ok(cost) => {
                    let window = cost.window.as_secs_f64();
                    let per_second = cost.cpu.schedstat.as_secs_f64() / window;
                    let ticks = cost.cpu.ticks as f64 / clock_ticks() / window;
                    println!(
                        "| {} | {} | {} | {:.0} µs | {:.3} % | {:.2} % | {:.1} | {:.1} | {} KiB |",
                        row.n,
                        row.watcher,
                        row.processes,
                        per_second * 1e6,
                        per_second * 100.0,
                        ticks * 100.0,
                        cost.reads_per_second,
                        cost.checks_per_second,
                        cost.rss_kib
                    );
                }
                Err(why) => println!(
                    "| {} | {} | {} | not available: {} | - | - | - | - | - |",
                    row.n,
                    row.watcher,
                    row.processes,
                    why.replace('|', "/")
                ),
            }
        }
    }
    if !estimates.is_empty() {
        println!();
        println!(
            "Not sockwatch: a thread of the bench, {} s each; CPU of the thread",
            settings.seconds
        );
        println!();
        println!("| N | what | CPU per second | share of one CPU |");
        println!("|---|---|---|---|");
        for row in estimates {
            let per_second = row.cpu.as_secs_f64() / row.window.as_secs_f64();
            let n = match row.n {
                0 => "-".to_string(),
                n => n.to_string(),
            };
            println!(
                "| {n} | {} | {:.0} µs | {:.3} % |",
                row.what,
                per_second * 1e6,
                per_second * 100.0
            );
        }
    }
    if !sweeps.is_empty() {
        println!();
        println!(
            "`ss` in every namespace, one after another (a sweep); median of 3 sweeps; \
             CPU of the processes run (getrusage of children)"
        );
        println!();
        println!(
            "| N | per namespace | sweep wall | sweep CPU | one sweep per second: share of one CPU | one sweep per {} ms (sockwatch's interval) | back to back: share of one CPU, a sweep every |",
            DEFAULT_INTERVAL.as_millis()
        );
        println!("|---|---|---|---|---|---|---|");
        for row in sweeps {
            let cpu = row.cpu.as_secs_f64();
            let every = if row.wall > DEFAULT_INTERVAL {
                format!("impossible: a sweep takes {}", ms(row.wall))
            } else {
                format!(
                    "{:.1} % of one CPU",
                    cpu / DEFAULT_INTERVAL.as_secs_f64() * 100.0
                )
            };
            println!(
                "| {} | `{}` | {} | {} | {:.2} % | {} | {:.0} %, {} |",
                row.n,
                row.ss.label(),
                ms(row.wall),
                ms(row.cpu),
                cpu * 100.0,
                every,
                cpu / row.wall.as_secs_f64() * 100.0,
                ms(row.wall)
            );
        }
    }
    if !polls.is_empty() {
        println!();
        println!(
            "One poll: `sockwatch list` as a process, median of {} (CPU: getrusage of \
             children). Latency: a TCP listener made in a random namespace, from \
             `listen()` returning to the watch's line (and from `close()` to \
             `socket-closed`), {} trials, 0–100 ms apart",
            settings.lists, settings.trials
        );
        println!();
        println!(
            "| N | sockwatch … | list wall | list CPU | appear p50 | p99 | max | seen | close p50 | p99 | max | seen |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
        for row in polls {
            let list = match &row.list {
                Ok((wall, cpu)) => format!("{} | {}", ms(*wall), ms(*cpu)),
                Err(why) => format!("not available: {} | -", why.replace('|', "/")),
            };
            let latency = match &row.latency {
                Ok(l) => {
                    let (mut appear, mut close) = (l.appear.clone(), l.close.clone());
                    format!(
                        "{} | {}",
                        spread(&mut appear, l.trials),
                        spread(&mut close, l.trials)
                    )
                }
                // Said once when `list` was refused the same way.
                Err(why) if row.list.as_ref().err() == Some(why) => {
                    "- | - | - | - | - | - | - | -".into()
                }
                Err(why) => format!(
                    "not available: {} | - | - | - | - | - | - | -",
                    why.replace('|', "/")
                ),
            };
            println!("| {} | {} | {list} | {latency} |", row.n, row.mode);
        }
    }
}
