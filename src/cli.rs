//! The command line: `list`, `watch`, `wait`, `run` and `export`, and what
//! installs them (`completions`, `man`).
//!
//! `main.rs` only parses (clap derive) and calls [`run`]; errors become exit
//! codes in one place, [`exit_code`]. Everything here is library code so the
//! integration tests and benches exercise the same paths as users.

use std::ffi::OsStr;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args as ClapArgs, CommandFactory, Parser, Subcommand};

use crate::condition::Condition;
use crate::detect::Detect;
use crate::endpoint::Table;
use crate::event::{Event, Format};
use crate::exit;
use crate::export::{self, Exporter, textfile::Textfile};
use crate::hook::{self, Hooks};
use crate::notify::Notify;
use crate::output::{Output, QUEUE_BYTES, Sent};
use crate::run::{Outcome, RunOptions};
use crate::stop::StopSignals;
use crate::watcher::{self, Options, SourceChoice, Stop, Watcher};

/// Know from the kernel when a service is listening, without poking it.
#[derive(Debug, Parser)]
#[command(name = "sockwatch", version, propagate_version = true)]
#[command(after_help = "\
Examples:
  sockwatch list
  sockwatch watch --json
  sockwatch wait --timeout 30s socket PROTO=inet PORT=5432

Exit codes: 0 success, 1 runtime error, 2 usage or bad condition, 124 timed out.")]
pub struct Args {
    #[command(subcommand)]
    command: Command,

    /// Where socket facts come from: sock_diag netlink, falling back to
    /// /proc per table where it is unavailable (auto), or only one of them.
    #[arg(long, global = true, value_enum, default_value_t = SourceChoice::Auto)]
    source: SourceChoice,

    /// How new listeners are noticed: perf tracepoints on listen and bind
    /// wake sockwatch, which reads the tables at once (kernel: root or
    /// CAP_PERFMON); the socket counters of /proc/net/sockstat, reading the
    /// tables only when they move (changes); or reading the tables every
    /// interval (poll). auto takes the first that works here; -v says which,
    /// and why not the others.
    #[arg(long, global = true, value_enum, default_value_t = Detect::Auto)]
    detect: Detect,

    /// Read /proc from here: /proc/<pid> watches that process's network
    /// namespace (netlink needs CAP_SYS_ADMIN to enter it; /proc does not).
    #[arg(long, global = true, value_name = "DIR", default_value = "/proc")]
    proc_root: std::path::PathBuf,

    /// Watch this network namespace instead of ours: a name under
    /// /run/netns (as ip netns makes them) or a namespace file such as
    /// /proc/PID/ns/net. Repeatable; events then carry NETNS=. Entering one
    /// needs CAP_SYS_ADMIN; without it, one named by /proc/PID/ns/net is
    /// read from /proc/PID/net. Not for run.
    #[arg(long, global = true, value_name = "NAME|PATH")]
    netns: Vec<String>,

    /// Watch every network namespace on the host (ours included), found
    /// from /proc/*/ns/net, /run/netns and nsfs mounts, picked up within a
    /// second or two as they appear and dropped as they go; events carry
    /// NETNS=. Entering them needs CAP_SYS_ADMIN; without it, those with a
    /// process whose /proc this user may read are read from there. Not for
    /// run.
    #[arg(long, global = true, conflicts_with = "netns")]
    all_netns: bool,

    /// Say what sockwatch decides and skips, on stderr.
    #[arg(short, long, global = true)]
    verbose: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the listening endpoints, one `socket ...` line each.
    #[command(after_help = "\
Examples:
  sockwatch list
  sockwatch list --json socket TRANSPORT=udp
  sockwatch list socket PORT=8000-8099")]
    List(ListArgs),
    /// Print the current endpoints, then an event each time one appears or
    /// closes, until interrupted.
    #[command(after_help = "\
Examples:
  sockwatch watch
  sockwatch watch --no-initial --json
  sockwatch watch socket PROTO=inet6")]
    Watch(WatchArgs),
    /// Wait until a condition holds (or, with --gone, no longer holds).
    #[command(after_help = "\
Examples:
  sockwatch wait socket PORT=80
  sockwatch wait --timeout 30s 'socket PROTO=inet PORT=5432 and socket PORT=6379'
  sockwatch wait --gone socket TRANSPORT=tcp PORT=8080

Exits 0 once the condition holds (at once if it already does), 124 when
--timeout runs out.")]
    Wait(WaitArgs),
    /// Run a service and announce it ready when its own sockets listen.
    #[command(after_help = "\
Examples:
  sockwatch run --ready-on 'socket PORT=631' -- /usr/sbin/cupsd -f
  sockwatch run --notify fd:3 -- nginx -g 'daemon off;'
  sockwatch run --timeout 30s -- ./server --port 8080

Ready when the condition holds over the endpoints the service's own process
tree listens on (without --ready-on: as soon as it listens on anything).
Exits with the service's status (killed by signal N: dies of signal N too);
124 after --timeout, 126 or 127 when PROGRAM cannot be run.")]
    Run(RunArgs),
    /// Serve the listening endpoints as Prometheus metrics, or write them
    /// for node_exporter's textfile collector, until interrupted.
    #[command(after_help = "\
Examples:
  sockwatch export --listen 127.0.0.1:9847
  sockwatch export --textfile /var/lib/prometheus/node-exporter/sockwatch.prom
  sockwatch export --listen [::]:9847 --processes socket TRANSPORT=tcp

Series: sockwatch_listening{proto,port,addr,transport,...} 1 per endpoint,
sockwatch_events_total{event}, sockwatch_reads_total{source,table},
sockwatch_read_seconds, sockwatch_source_info, sockwatch_build_info.")]
    Export(ExportArgs),
    /// Print a completion script for SHELL on stdout.
    #[command(after_help = "\
Examples:
  sockwatch completions bash > /usr/share/bash-completion/completions/sockwatch
  sockwatch completions zsh > /usr/local/share/zsh/site-functions/_sockwatch
  sockwatch completions fish > ~/.config/fish/completions/sockwatch.fish")]
    Completions(CompletionsArgs),
    /// Print the manual page, sockwatch(1), in roff on stdout.
    #[command(after_help = "\
Examples:
  sockwatch man > /usr/local/share/man/man1/sockwatch.1
  sockwatch man | man -l -")]
    Man,
}

#[derive(Debug, ClapArgs)]
struct ListArgs {
    /// One JSON object per line instead of text.
    #[arg(long)]
    json: bool,

    /// Name the process behind each endpoint (PID=, COMM=): the lowest pid
    /// holding one of its sockets, where this user may look.
    #[arg(long)]
    processes: bool,

    /// Only endpoints that satisfy a clause of this condition.
    #[arg(value_name = "CONDITION")]
    condition: Vec<String>,
}

#[derive(Debug, ClapArgs)]
struct WatchArgs {
    /// One JSON object per line instead of text.
    #[arg(long)]
    json: bool,

    /// Name the process behind each endpoint (PID=, COMM=): the lowest pid
    /// holding one of its sockets, where this user may look.
    #[arg(long)]
    processes: bool,

    /// How often to poll for new listeners (closing is pushed by the
    /// kernel): 50ms, 1s, or a number of seconds, at most 10 years. Default
    /// 50ms; 500ms when reading /proc, whose every poll makes the kernel
    /// walk its connection hash. With kernel triggers, the safety net: the
    /// tables are read at least this often (default 5s; 10s from /proc).
    #[arg(long, value_name = "DUR", value_parser = parse_duration, allow_hyphen_values = true)]
    interval: Option<Duration>,

    /// Print only changes, not the endpoints already listening.
    #[arg(long)]
    no_initial: bool,

    /// Run PROGRAM [ARGS...] for each event, with the event's fields in its
    /// environment (EVENT, PROTO, PORT, ADDR, TRANSPORT, ...) and its
    /// output on stderr. Takes the rest of the command line: put the
    /// condition before it.
    #[arg(long, value_name = "PROGRAM", num_args = 1.., allow_hyphen_values = true)]
    exec: Vec<std::ffi::OsString>,

    /// Only endpoints that satisfy a clause of this condition.
    #[arg(value_name = "CONDITION")]
    condition: Vec<String>,
}

#[derive(Debug, ClapArgs)]
struct WaitArgs {
    /// Give up after this long (exit 124): 500ms, 30s, 2m, or a number of
    /// seconds, at most 10 years. Waits forever when not given.
    #[arg(long, value_name = "DUR", value_parser = parse_duration, allow_hyphen_values = true)]
    timeout: Option<Duration>,

    /// How often to poll for new listeners, at most 10 years [default: 50ms].
    /// With kernel triggers, the safety net (default 5s).
    #[arg(long, value_name = "DUR", value_parser = parse_duration, allow_hyphen_values = true)]
    interval: Option<Duration>,

    /// Wait until the condition no longer holds.
    #[arg(long)]
    gone: bool,

    /// The condition, e.g. `socket PROTO=inet PORT=80`.
    #[arg(value_name = "CONDITION", required = true)]
    condition: Vec<String>,
}

#[derive(Debug, ClapArgs)]
struct RunArgs {
    /// Ready when this condition holds over the service's own endpoints.
    #[arg(long, value_name = "CONDITION")]
    ready_on: Option<String>,

    /// How to announce readiness: systemd (sd_notify to $NOTIFY_SOCKET; the
    /// default when it is set), fd:N (a newline on descriptor N, as s6's
    /// notification-fd), or none.
    #[arg(long, value_name = "HOW")]
    notify: Option<String>,

    /// Stop the service (SIGTERM, SIGKILL 5s later) and exit 124 if it is
    /// not ready by then (at most 10 years).
    #[arg(long, value_name = "DUR", value_parser = parse_duration, allow_hyphen_values = true)]
    timeout: Option<Duration>,

    /// How often to look for new listeners until ready, at most 10 years
    /// [default: 50ms].
    #[arg(long, value_name = "DUR", value_parser = parse_duration, allow_hyphen_values = true)]
    interval: Option<Duration>,

    /// Leave NOTIFY_SOCKET in the service's environment, so that it may also
    /// notify on its own.
    #[arg(long)]
    pass_notify: bool,

    /// The service: PROGRAM [ARGS...], after `--`.
    #[arg(value_name = "PROGRAM", required = true, last = true)]
    command: Vec<std::ffi::OsString>,
}

#[derive(Debug, ClapArgs)]
#[command(group(
    clap::ArgGroup::new("output")
        .args(["listen", "textfile"])
        .required(true)
        .multiple(true)
))]
struct ExportArgs {
    /// Serve GET /metrics on this IP address and port (127.0.0.1:9847,
    /// [::]:9847), in the Prometheus text format.
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_listen)]
    listen: Option<SocketAddr>,

    /// Write the metrics to this *.prom file in node_exporter's textfile
    /// directory, replaced atomically at every change and removed when
    /// sockwatch stops.
    #[arg(long, value_name = "PATH")]
    textfile: Option<PathBuf>,

    /// Label each endpoint with the process behind it (pid, comm): the
    /// lowest pid holding one of its sockets, where this user may look.
    #[arg(long)]
    processes: bool,

    /// How often to poll for new listeners, at most 10 years (default as
    /// for watch).
    #[arg(long, value_name = "DUR", value_parser = parse_duration, allow_hyphen_values = true)]
    interval: Option<Duration>,

    /// Only endpoints that satisfy a clause of this condition.
    #[arg(value_name = "CONDITION")]
    condition: Vec<String>,
}

#[derive(Debug, ClapArgs)]
struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_name = "SHELL", value_enum)]
    shell: clap_complete::Shell,
}

pub use crate::exit::UsageError;

/// The exit code for an error returned by [`run`].
pub fn exit_code(error: &anyhow::Error) -> u8 {
    if error.downcast_ref::<UsageError>().is_some() {
        exit::USAGE
    } else {
        exit::RUNTIME
    }
}

/// The longest duration sockwatch takes (10 years of 365.25 days, as
/// `10years` reads): beyond any wait a person means, and far within what
/// the monotonic clock can add, so that no deadline overflows.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 31_557_600);

/// [`MAX_DURATION`] in words, for messages and `--help`.
const MAX_DURATION_TEXT: &str = "10 years";

/// Durations as humans write them (`100ms`, `1m30s`), or bare seconds as
/// wait-for-it and timeout(1) take them, bounded by [`MAX_DURATION`] here,
/// while parsing, so that nothing starts with a duration the clock cannot
/// hold.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let too_long = || format!("longer than the limit of {MAX_DURATION_TEXT}");
    if let Ok(seconds) = text.parse::<f64>() {
        if seconds.is_nan() {
            return Err(format!(
                "not a number of seconds (durations go up to {MAX_DURATION_TEXT})"
            ));
        }
        if seconds < 0.0 {
            return Err("negative durations are not allowed".into());
        }
        // Infinity, and everything past the limit, before any conversion.
        if seconds > MAX_DURATION.as_secs_f64() {
            return Err(too_long());
        }
        return Duration::try_from_secs_f64(seconds).map_err(|_| too_long());
    }
    if text.trim_start().starts_with('-') {
        return Err("negative durations are not allowed".into());
    }
    match humantime::parse_duration(text) {
        Ok(duration) if duration > MAX_DURATION => Err(too_long()),
        Ok(duration) => Ok(duration),
        // Too large for humantime's own arithmetic, or finer than 1ns.
        Err(humantime::DurationError::NumberOverflow) => Err(format!(
            "out of range: durations go up to {MAX_DURATION_TEXT}, in steps of 1ns"
        )),
        Err(e) => Err(format!("{e} (try 500ms, 30s, 2m)")),
    }
}

/// An `--listen` address: an IP address and a port, as Rust and ss(8)
/// write them (`127.0.0.1:9847`, `[::1]:9847`). Host names are refused
/// rather than resolved: which address they stand for is for the user to
/// say.
fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = text.parse().map_err(|_| {
        "expected an IP address and a port: 127.0.0.1:9847, [::1]:9847, or 0.0.0.0:9847 \
         for every IPv4 address (host names are not resolved)"
            .to_owned()
    })?;
    if addr.port() == 0 {
        return Err("port 0 would be a port no scraper knows; choose one".into());
    }
    Ok(addr)
}

/// Refuses an interval that would spin the loop.
fn check_interval(interval: Duration) -> anyhow::Result<Duration> {
    if interval < Duration::from_millis(1) {
        return Err(UsageError("--interval must be at least 1ms".into()).into());
    }
    Ok(interval)
}

/// Parses the words of a condition, joined by spaces so that it may be
/// given quoted or not.
fn parse_condition(words: &[String]) -> anyhow::Result<Option<Condition>> {
    if words.is_empty() {
        return Ok(None);
    }
    let text = words.join(" ");
    match Condition::parse(&text) {
        Ok(condition) => Ok(Some(condition)),
        Err(e) => Err(UsageError(format!("bad condition: {}", e.render(&text))).into()),
    }
}

fn options(
    args: &Args,
    condition: Option<&Condition>,
    pushed: bool,
    processes: bool,
) -> anyhow::Result<Options> {
    let processes = processes || condition.is_some_and(Condition::uses_processes);
    if args.all_netns {
        if matches!(args.command, Command::Run(_)) {
            return Err(UsageError(
                "--all-netns does not apply to run: its service runs in our namespace".into(),
            )
            .into());
        }
        if args.proc_root != std::path::Path::new("/proc") {
            return Err(UsageError(
                "--all-netns and --proc-root both choose the namespace: give one of them".into(),
            )
            .into());
        }
    }
    if !args.netns.is_empty() {
        if matches!(args.command, Command::Run(_)) {
            return Err(UsageError(
                "--netns does not apply to run: its service runs in our namespace".into(),
            )
            .into());
        }
        if args.netns.iter().any(String::is_empty) {
            return Err(UsageError(
                "--netns: expected a name under /run/netns or a namespace file".into(),
            )
            .into());
        }
        if args.proc_root != std::path::Path::new("/proc") {
            return Err(UsageError(
                "--netns and --proc-root both choose the namespace: give one of them".into(),
            )
            .into());
        }
    }
    let netns = crate::netns::resolve(&args.netns)?;
    Ok(Options {
        source: args.source,
        tables: condition.map_or_else(|| Table::ALL.to_vec(), Condition::tables),
        pushed,
        processes,
        proc_root: args.proc_root.clone(),
        // A stream says once why it reads /proc; one-shot commands only
        // when asked.
        announce: matches!(args.command, Command::Watch(_) | Command::Export(_)),
        verbose: args.verbose,
        detect: args.detect,
        refresh_owners: condition.is_some_and(Condition::uses_processes),
        v6only_matters: condition.is_some_and(Condition::depends_on_v6only),
        netns,
        all_netns: args.all_netns,
    })
}

/// Runs a parsed command line.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match &args.command {
        Command::List(list) => run_list(&args, list),
        Command::Watch(watch) => run_watch(&args, watch),
        Command::Wait(wait) => run_wait(&args, wait),
        Command::Run(run) => run_run(&args, run),
        Command::Export(export) => run_export(&args, export),
        Command::Completions(completions) => {
            // Made whole first: the generators panic when a write fails,
            // and a closed stdout must end quietly.
            let mut script = Vec::new();
            clap_complete::generate(
                completions.shell,
                &mut Args::command(),
                "sockwatch",
                &mut script,
            );
            print(&script)
        }
        Command::Man => print(
            &crate::manual::page(Args::command()).context("failed to render the manual page")?,
        ),
    }
}

/// Writes `text` to stdout: the output of a command that prints one thing.
fn print(text: &[u8]) -> anyhow::Result<ExitCode> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    // Written in full or to a reader that left: either way, done.
    let _: ControlFlow<()> = quiet_on_broken_pipe(out.write_all(text).and_then(|()| out.flush()))?;
    Ok(ExitCode::from(exit::SUCCESS))
}

fn format(json: bool) -> Format {
    if json { Format::Json } else { Format::Text }
}

/// How long lines still queued when a watch ends may take to be written.
const OUTPUT_GRACE: Duration = Duration::from_millis(100);

/// Ends quietly on a closed stdout: the reader has all it wanted.
fn quiet_on_broken_pipe(result: io::Result<()>) -> anyhow::Result<ControlFlow<()>> {
    match result {
        Ok(()) => Ok(ControlFlow::Continue(())),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(ControlFlow::Break(())),
        Err(e) => Err(e).context("failed to write to stdout"),
    }
}

fn run_list(args: &Args, list: &ListArgs) -> anyhow::Result<ExitCode> {
    let condition = parse_condition(&list.condition)?;
    let mut watcher = Watcher::open(&options(args, condition.as_ref(), false, list.processes)?)?;
    let events = watcher.list()?;
    let snapshot = watcher.snapshot();
    if args.verbose {
        eprintln!(
            "sockwatch: read {}; {} endpoint(s)",
            watcher.describe_routes(),
            snapshot.len()
        );
    }
    let stdout = io::stdout();
    let mut out = stdout.lock();
    for event in events {
        let facts = snapshot.facts(&event.endpoint, &event.listener);
        if condition.as_ref().is_some_and(|c| !c.selects(&facts)) {
            continue;
        }
        if quiet_on_broken_pipe(event.write(format(list.json), &mut out))?.is_break() {
            break;
        }
    }
    Ok(ExitCode::from(exit::SUCCESS))
}

fn run_watch(args: &Args, watch: &WatchArgs) -> anyhow::Result<ExitCode> {
    let condition = parse_condition(&watch.condition)?;
    if let Some(program) = watch.exec.first() {
        // Found now, not at the first event, which may be days away.
        find_program(program, std::env::var_os("PATH").as_deref())
            .map_err(|e| UsageError(format!("--exec: {e}")))?;
    }
    // Caught before anything else, so that no stop is missed: every wait of
    // the watch (the kernel, room in stdout) yields to it.
    let stop = StopSignals::catch().context("failed to handle signals")?;
    let mut watcher = Watcher::open(&options(args, condition.as_ref(), true, watch.processes)?)?;
    let interval = check_interval(
        watch
            .interval
            .unwrap_or_else(|| watcher.default_interval(true)),
    )?;
    let format = format(watch.json);
    let stdout = io::stdout();
    let out = stdout
        .as_fd()
        .try_clone_to_owned()
        .context("failed to use stdout")?;
    let mut output =
        Output::start(out, stop.fd(), QUEUE_BYTES).context("failed to start the output thread")?;
    let mut hooks = if watch.exec.is_empty() {
        None
    } else {
        let hooks = Hooks::start(watch.exec.clone(), hook::QUEUE)
            .context("failed to start the hook thread")?;
        Some(hooks)
    };
    let mut initial = true;
    // A reader that goes away ends the stream at once, not at the next
    // event's write, which may be far off on a quiet system.
    let ended = watcher.run_until_stopped(
        &stop,
        interval,
        None,
        Some(stdout.as_fd()),
        |events, snapshot| {
            let skip = initial && watch.no_initial;
            initial = false;
            if skip {
                return Ok(ControlFlow::Continue(()));
            }
            for event in events {
                if !selected(condition.as_ref(), event, snapshot) {
                    continue;
                }
                if let Some(hooks) = &mut hooks {
                    hooks.submit(event);
                }
                let mut line = Vec::new();
                event.write(format, &mut line)?;
                match output.send(line).context("failed to write to stdout")? {
                    Sent::Queued => {}
                    Sent::ReaderGone | Sent::Stopped => return Ok(ControlFlow::Break(())),
                }
            }
            Ok(ControlFlow::Continue(()))
        },
    );
    // However the watch ended (a stop, a closed stdout, an error), the
    // running hook is stopped, not waited for, and lines a stop finds
    // queued get a moment to reach a reader that keeps up; the rest are
    // dropped. Within a second in all.
    drop(hooks);
    output.finish(OUTPUT_GRACE);
    ended?;
    // A signal, a closed stdout or the end of input: all are a normal end.
    Ok(ExitCode::from(exit::SUCCESS))
}

/// Where execvp(3) would find `program`: the file itself when the name
/// contains a `/`, else the first executable regular file of that name in
/// the directories of `path` (`/bin:/usr/bin` when unset, as glibc's
/// execvp; an empty entry is the current directory). The error says why
/// not, naming the program.
fn find_program(program: &OsStr, path: Option<&OsStr>) -> Result<PathBuf, String> {
    let name = program.to_string_lossy();
    if program.is_empty() {
        return Err("the program name is empty".into());
    }
    if program.as_bytes().contains(&b'/') {
        let file = Path::new(program);
        return match executable(file) {
            Ok(()) => Ok(file.to_owned()),
            Err(why) => Err(format!("'{name}' {why}")),
        };
    }
    let path = path.unwrap_or(OsStr::new("/bin:/usr/bin"));
    let mut refused = None;
    for dir in std::env::split_paths(path) {
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let file = dir.join(program);
        match executable(&file) {
            Ok(()) => return Ok(file),
            Err(NotExecutable::Missing) => {}
            Err(why) => {
                refused.get_or_insert((file, why));
            }
        }
    }
    Err(match refused {
        Some((file, why)) => format!("'{name}' is not found in PATH ({} {why})", file.display()),
        None => format!("'{name}' is not found in PATH"),
    })
}

/// Why a file cannot be executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NotExecutable {
    Missing,
    Directory,
    NotRegular,
    Denied,
}

impl std::fmt::Display for NotExecutable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NotExecutable::Missing => "does not exist",
            NotExecutable::Directory => "is a directory",
            NotExecutable::NotRegular => "is not a regular file",
            NotExecutable::Denied => "is not executable by this user",
        })
    }
}

/// Whether `file` is a regular file this process may execute.
fn executable(file: &Path) -> Result<(), NotExecutable> {
    let metadata = std::fs::metadata(file).map_err(|_| NotExecutable::Missing)?;
    if metadata.is_dir() {
        return Err(NotExecutable::Directory);
    }
    if !metadata.is_file() {
        return Err(NotExecutable::NotRegular);
    }
    if crate::sys::can_execute(file) {
        Ok(())
    } else {
        Err(NotExecutable::Denied)
    }
}

fn selected(condition: Option<&Condition>, event: &Event, snapshot: &watcher::Snapshot) -> bool {
    condition.is_none_or(|c| c.selects(&snapshot.facts(&event.endpoint, &event.listener)))
}

fn run_wait(args: &Args, wait: &WaitArgs) -> anyhow::Result<ExitCode> {
    let Some(condition) = parse_condition(&wait.condition)? else {
        return Err(UsageError("wait needs a condition".into()).into());
    };
    let deadline = match wait.timeout {
        // Bounded by parse_duration; checked all the same, as a deadline
        // past the clock's end must be an error, never a panic.
        Some(timeout) => Some(Instant::now().checked_add(timeout).ok_or_else(|| {
            UsageError(format!(
                "--timeout is longer than the limit of {MAX_DURATION_TEXT}"
            ))
        })?),
        None => None,
    };
    let mut watcher = Watcher::open(&options(args, Some(&condition), true, false)?)?;
    let interval = check_interval(
        wait.interval
            .unwrap_or_else(|| watcher.default_interval(false)),
    )?;
    let stop = watcher.run(interval, deadline, None, |_, snapshot| {
        // An answer that rests on a fact sockwatch cannot see is neither.
        let facts = snapshot.all_facts();
        let done = if wait.gone {
            condition.fails(&facts)
        } else {
            condition.holds(&facts)
        };
        Ok(if done {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        })
    })?;
    Ok(ExitCode::from(match stop {
        Stop::Done => exit::SUCCESS,
        Stop::TimedOut => {
            let what = if wait.gone { "to be gone" } else { "to hold" };
            let timeout = humantime::format_duration(wait.timeout.unwrap_or_default());
            match watcher.last_failure().filter(|_| !watcher.complete()) {
                // Not the condition's fault: a table was never read.
                Some(failure) => eprintln!(
                    "sockwatch: timed out after {timeout}: could not read every socket table \
                     ({failure}), so whether '{}' holds is unknown",
                    condition.text()
                ),
                None => eprintln!(
                    "sockwatch: timed out after {timeout} waiting for '{}' {what}",
                    condition.text()
                ),
            }
            exit::TIMEOUT
        }
        Stop::Signal(signal) => 128 + signal as u8,
    }))
}

fn run_export(args: &Args, export: &ExportArgs) -> anyhow::Result<ExitCode> {
    let condition = parse_condition(&export.condition)?;
    if let Some(interval) = export.interval {
        check_interval(interval)?;
    }
    let textfile = export.textfile.as_deref().map(Textfile::new).transpose()?;
    // Bound before the sources open, so that a port in use is said at once.
    let listener = export.listen.map(export::http::bind).transpose()?;
    let mut watcher = Watcher::open(&options(args, condition.as_ref(), true, export.processes)?)?;
    let interval = check_interval(
        export
            .interval
            .unwrap_or_else(|| watcher.default_interval(true)),
    )?;
    Exporter {
        listener,
        textfile,
        condition,
        processes: export.processes,
        interval,
        verbose: args.verbose,
    }
    .run(&mut watcher)?;
    // SIGINT and SIGTERM are the normal end.
    Ok(ExitCode::from(exit::SUCCESS))
}

fn run_run(args: &Args, run: &RunArgs) -> anyhow::Result<ExitCode> {
    let ready_on = match &run.ready_on {
        Some(text) => parse_condition(std::slice::from_ref(text))?,
        None => None,
    };
    // Before anything opens a descriptor: `--notify fd:N` claims N.
    let notify = Notify::parse(run.notify.as_deref(), std::env::var_os("NOTIFY_SOCKET"))
        .map_err(|e| UsageError(e.to_string()))?;
    let watcher = Watcher::open(&options(args, ready_on.as_ref(), false, false)?)?;
    let interval = check_interval(
        run.interval
            .unwrap_or_else(|| watcher.default_self_polled_interval()),
    )?;
    let outcome = crate::run::run_service(
        RunOptions {
            ready_on,
            notify,
            timeout: run.timeout,
            interval,
            grace: Duration::from_secs(5),
            pass_notify: run.pass_notify,
            command: run.command.clone(),
            verbose: args.verbose,
        },
        watcher,
    )?;
    match outcome {
        Outcome::Exit(code) => Ok(ExitCode::from(code)),
        // The service died of a signal: so does sockwatch, as the last act.
        Outcome::Signal(signal) => crate::sys::die_by_signal(signal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_command_line_is_consistent() {
        Args::command().debug_assert();
    }

    /// The words a POSIX shell makes of `line`: enough of its quoting for
    /// examples (single quotes, double quotes with `\"`, a backslash
    /// before a newline to continue the line).
    fn shell_words(line: &str) -> Vec<String> {
        let mut words = Vec::new();
        let mut word: Option<String> = None;
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('\n') | None => {}
                    Some(next) => word.get_or_insert_default().push(next),
                },
                '\'' => {
                    let quoted: String = chars.by_ref().take_while(|&c| c != '\'').collect();
                    word.get_or_insert_default().push_str(&quoted);
                }
                '"' => {
                    let word = word.get_or_insert_default();
                    while let Some(c) = chars.next() {
                        match c {
                            '"' => break,
                            '\\' => word.extend(chars.next()),
                            c => word.push(c),
                        }
                    }
                }
                c if c.is_whitespace() => words.extend(word.take()),
                c => word.get_or_insert_default().push(c),
            }
        }
        words.extend(word);
        words
    }

    #[test]
    fn shell_words_as_a_shell_splits_them() {
        assert_eq!(
            shell_words("a 'b c' \"d \\\"e\" \\\n  f'g'"),
            ["a", "b c", "d \"e", "fg"]
        );
    }

    /// Parses `line` as sockwatch would, conditions included.
    fn parse_line(line: &str) -> anyhow::Result<()> {
        let args = Args::try_parse_from(shell_words(line))?;
        match &args.command {
            Command::List(ListArgs { condition, .. })
            | Command::Watch(WatchArgs { condition, .. })
            | Command::Wait(WaitArgs { condition, .. })
            | Command::Export(ExportArgs { condition, .. }) => {
                parse_condition(condition)?;
            }
            Command::Run(run) => {
                if let Some(text) = &run.ready_on {
                    parse_condition(std::slice::from_ref(text))?;
                }
            }
            Command::Completions(_) | Command::Man => {}
        }
        Ok(())
    }

    #[test]
    fn every_example_of_the_manual_is_a_valid_command_line() {
        for example in crate::manual::EXAMPLES {
            // A line ending in a backslash goes on on the next.
            let command = example.command.replace("\\\n", " ");
            for line in command.lines() {
                if let Err(e) = parse_line(line) {
                    panic!("{line}: {e:#}");
                }
            }
        }
        // And a mistake is caught, so the check has teeth.
        assert!(parse_line("sockwatch wait socket PORT=0").is_err());
        assert!(parse_line("sockwatch wait --tiemout 1s socket PORT=80").is_err());
    }

    #[test]
    fn durations_as_written() {
        let ok = |text: &str| parse_duration(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(ok("50ms"), Duration::from_millis(50));
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("1.5"), Duration::from_millis(1500));
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("10years"), MAX_DURATION);
        assert_eq!(ok("315576000"), MAX_DURATION);
    }

    #[test]
    fn durations_beyond_the_limit_name_it() {
        for text in [
            "1e19",
            "1e30",
            "inf",
            "-inf",
            "NaN",
            "315576000.5",
            "11years",
            "500000000000years",
            "99999999999999999999999s",
            "0.5ns",
        ] {
            let error = parse_duration(text).expect_err(text);
            let expected = if text.starts_with('-') {
                "negative"
            } else {
                "10 years"
            };
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn negative_durations_say_so() {
        for text in ["-1", "-0.5", "-5s", " -5s"] {
            assert_eq!(
                parse_duration(text).expect_err(text),
                "negative durations are not allowed"
            );
        }
        assert!(parse_duration("5x").unwrap_err().contains("try 500ms"));
    }

    /// A scratch directory for programs to find.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sockwatch-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn file(path: &Path, mode: u32) {
        std::fs::write(path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn programs_are_found_as_execvp_would() {
        let dir = scratch("find-program");
        let (first, second) = (dir.join("first"), dir.join("second"));
        std::fs::create_dir_all(&first).unwrap();
        std::fs::create_dir_all(&second).unwrap();
        // Not executable in the first directory: execvp goes on to the next.
        file(&first.join("hook"), 0o644);
        file(&second.join("hook"), 0o755);
        let path = std::env::join_paths([&first, &second]).unwrap();
        let find = |name: &str| find_program(OsStr::new(name), Some(&path));
        assert_eq!(find("hook"), Ok(second.join("hook")));
        let error = find("absent").unwrap_err();
        assert_eq!(error, "'absent' is not found in PATH");
        // A name with a slash is that file, PATH or not.
        let direct = second.join("hook");
        assert_eq!(find(direct.to_str().unwrap()), Ok(direct.clone()));
        std::fs::remove_file(second.join("hook")).unwrap();
        let error = find("hook").unwrap_err();
        assert!(
            error.contains("not found in PATH") && error.contains("is not executable"),
            "{error}"
        );
        let error = find(first.to_str().unwrap()).unwrap_err();
        assert!(error.ends_with("is a directory"), "{error}");
        assert_eq!(
            find("").unwrap_err(),
            "the program name is empty".to_string()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_unset_path_is_the_default_one() {
        assert_eq!(
            find_program(OsStr::new("sh"), None),
            Ok(PathBuf::from("/bin/sh"))
        );
    }
}
