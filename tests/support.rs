//! What every integration test needs: a private network namespace, real
//! sockets in it, and the real `sockwatch` binary run with deadlines.
//!
//! A test calls [`Netns::enter`] first. The namespace belongs to the test's
//! thread (libtest runs each test on a thread of its own), and every process
//! the test spawns inherits it, so tests are hermetic and run in parallel: a
//! fresh namespace has no sockets but the ones the test makes.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

/// How long anything that should happen promptly may take before a test
/// fails. Generous: CI machines are slow and shared.
pub const PROMPTLY: Duration = Duration::from_secs(10);

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_sockwatch");

pub use crate::netns::Netns;

/// Tests run by a user other than root still get network namespaces of
/// their own, inside a user namespace where that user is root. A process
/// may enter a new user namespace only while it has a single thread
/// (unshare(2): EINVAL otherwise), and libtest runs every test on a thread
/// of its own, so this runs at load time, before `main`, as the `ctor`
/// crate would (without the dependency). [`Netns::enter`] then sees euid 0
/// and makes a network namespace per test.
#[used]
#[unsafe(link_section = ".init_array")]
static ENTER_USER_NAMESPACE: extern "C" fn() = enter_user_namespace;

/// Whether [`enter_user_namespace`] moved us into a user namespace: root
/// here is then only root over our own namespaces.
static IN_OWN_USER_NAMESPACE: AtomicBool = AtomicBool::new(false);

extern "C" fn enter_user_namespace() {
    // SAFETY: getters without preconditions.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    if uid == 0 {
        return;
    }
    // SAFETY: unshare takes flags only; the process has one thread yet.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER) } != 0 {
        eprintln!(
            "sockwatch tests: cannot enter a user namespace as uid {uid} ({}): every test that \
             needs a network namespace will fail; run as root or allow unprivileged user \
             namespaces (sysctl user.max_user_namespaces, kernel.unprivileged_userns_clone)",
            std::io::Error::last_os_error()
        );
        return;
    }
    let _ = std::fs::write("/proc/self/setgroups", "deny");
    let maps = std::fs::write("/proc/self/uid_map", format!("0 {uid} 1"))
        .and_then(|()| std::fs::write("/proc/self/gid_map", format!("0 {gid} 1")));
    match maps {
        Ok(()) => IN_OWN_USER_NAMESPACE.store(true, Ordering::Relaxed),
        Err(e) => eprintln!("sockwatch tests: cannot map uid {uid} in a user namespace: {e}"),
    }
}

/// Makes `command` run as an ordinary user, without privilege over the
/// test's network namespace: nobody (65534) when the tests run as root;
/// in the tests' own user namespace (see [`ENTER_USER_NAMESPACE`]), where
/// only our uid is mapped, root without any capability (SECBIT_NOROOT: an
/// exec grants none).
pub fn as_ordinary_user(command: &mut Command) {
    if !IN_OWN_USER_NAMESPACE.load(Ordering::Relaxed) {
        command.uid(65534).gid(65534);
        return;
    }
    // SAFETY: between fork and exec the closure only makes one prctl call.
    unsafe {
        command.pre_exec(|| {
            let bits = (libc::SECBIT_NOROOT | libc::SECBIT_NOROOT_LOCKED) as libc::c_ulong;
            if libc::prctl(libc::PR_SET_SECUREBITS, bits, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Asserts that process `pid` has no effective capability (and, when the
/// tests run as root, is not root).
#[track_caller]
pub fn assert_unprivileged(pid: u32) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
            .trim()
            .to_owned()
    };
    assert_eq!(field("CapEff:"), "0000000000000000", "{status}");
    if !IN_OWN_USER_NAMESPACE.load(Ordering::Relaxed) {
        assert!(field("Uid:").starts_with("65534"), "{status}");
    }
}

/// Whether this process may open a CPU-wide perf event (CAP_PERFMON, or
/// root, over the initial user namespace): what kernel triggers need, and
/// so what `--detect auto` takes. Asked of the kernel, not assumed.
pub fn perf_allowed() -> bool {
    // perf_event_attr, version 0 (64 bytes): PERF_TYPE_SOFTWARE,
    // PERF_COUNT_SW_CPU_CLOCK, disabled.
    let mut attr = [0u8; 64];
    attr[0..4].copy_from_slice(&1u32.to_ne_bytes());
    attr[4..8].copy_from_slice(&64u32.to_ne_bytes());
    attr[40..48].copy_from_slice(&1u64.to_ne_bytes());
    // SAFETY: perf_event_open reads the 64-byte attr we pass, which lives
    // across the call; the rest are integers. The descriptor is closed below.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr.as_ptr(),
            -1 as libc::pid_t,
            0 as libc::c_int,
            -1 as libc::c_int,
            libc::c_ulong::from(8u8), // PERF_FLAG_FD_CLOEXEC
        )
    };
    if fd < 0 {
        return false;
    }
    // SAFETY: the descriptor was just returned to us and is closed once.
    unsafe { libc::close(fd as libc::c_int) };
    true
}

fn addr(text: &str) -> SocketAddr {
    text.parse()
        .unwrap_or_else(|e| panic!("bad address {text}: {e}"))
}

/// A socket of `domain` and `ty` with options set before bind.
fn socket(address: &SocketAddr, ty: Type, v6only: Option<bool>, reuseport: bool) -> Socket {
    let protocol = if ty == Type::STREAM {
        Protocol::TCP
    } else {
        Protocol::UDP
    };
    let socket = Socket::new(Domain::for_address(*address), ty, Some(protocol)).unwrap();
    if let Some(v6only) = v6only {
        socket.set_only_v6(v6only).unwrap();
    }
    if reuseport {
        socket.set_reuse_port(true).unwrap();
    }
    socket.set_reuse_address(true).unwrap();
    socket
        .bind(&(*address).into())
        .unwrap_or_else(|e| panic!("bind {address}: {e}"));
    socket
}

/// A TCP listener on `address` (`127.0.0.1:80`, `[::]:3000`).
pub fn tcp(address: &str) -> Socket {
    tcp_with(address, None, false)
}

/// A TCP listener with IPV6_V6ONLY and SO_REUSEPORT as asked.
pub fn tcp_with(address: &str, v6only: Option<bool>, reuseport: bool) -> Socket {
    let socket = socket(&addr(address), Type::STREAM, v6only, reuseport);
    socket.listen(128).unwrap();
    socket
}

/// A bound, unconnected UDP socket.
pub fn udp(address: &str) -> Socket {
    udp_with(address, None)
}

/// A bound UDP socket with IPV6_V6ONLY as asked.
pub fn udp_with(address: &str, v6only: Option<bool>) -> Socket {
    socket(&addr(address), Type::DGRAM, v6only, false)
}

/// A UDP socket connected to `peer` (bound to an explicit port first, so
/// only being connected can exclude it).
pub fn udp_connected(local: &str, peer: &str) -> Socket {
    let socket = udp(local);
    socket.connect(&addr(peer).into()).unwrap();
    socket
}

/// A UDP client that sent a datagram without binding: the kernel picked
/// its port (and its address stays the wildcard).
pub fn udp_auto_bound(peer: &str) -> Socket {
    let peer = addr(peer);
    let socket = Socket::new(Domain::for_address(peer), Type::DGRAM, Some(Protocol::UDP)).unwrap();
    socket.send_to(b"x", &peer.into()).unwrap();
    socket
}

/// A UDP client bound to port 0, as some libraries do before sending: the
/// kernel picks the port, so it is auto-bound too.
pub fn udp_bound_to_port_zero(local: &str) -> Socket {
    let socket = Socket::new(
        Domain::for_address(addr(local)),
        Type::DGRAM,
        Some(Protocol::UDP),
    )
    .unwrap();
    socket.bind(&addr(local).into()).unwrap();
    socket
}

/// The port the kernel gave `socket`.
pub fn local_port(socket: &Socket) -> u16 {
    socket.local_addr().unwrap().as_socket().unwrap().port()
}

/// A TCP connection to `listener`'s address: the client and the accepted
/// socket (which must never count as listeners).
pub fn tcp_connection(listener: &Socket) -> (TcpStream, TcpStream) {
    let listener: TcpListener = listener.try_clone().unwrap().into();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (accepted, _) = listener.accept().unwrap();
    (client, accepted)
}

/// What a finished run printed.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// The exit code (panics when killed by a signal).
    pub fn code(&self) -> i32 {
        self.status
            .code()
            .unwrap_or_else(|| panic!("killed by a signal\n{self}"))
    }

    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    /// Every line of `--json` output, parsed (panics on a line that is not
    /// JSON: the contract says one object per line).
    pub fn json(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "status: {}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// A `sockwatch` command with the source under test.
pub fn command(source: &str, args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command.args(["--source", source]).args(args);
    command
}

/// Runs a command to completion within `deadline`, killing it otherwise.
pub fn finish(mut command: Command, deadline: Duration) -> Output {
    let mut child = spawn_piped(&mut command);
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let status = wait_deadline(&mut child, deadline);
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// Runs `sockwatch --source SOURCE ARGS...` to completion.
pub fn run(source: &str, args: &[&str]) -> Output {
    finish(command(source, args), PROMPTLY)
}

/// Starts `command` with no stdin and stdout and stderr to read.
fn spawn_piped(command: &mut Command) -> Child {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sockwatch")
}

fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

/// Waits for `child` to exit, killing it (and failing) at the deadline.
pub fn wait_deadline(child: &mut Child, deadline: Duration) -> ExitStatus {
    let until = Instant::now() + deadline;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            panic!("sockwatch did not exit within {deadline:?}");
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Asserts two line lists are equal, showing both side by side.
#[track_caller]
pub fn assert_lines(actual: &[&str], expected: &[&str]) {
    if actual != expected {
        let width = expected.iter().map(|l| l.len()).max().unwrap_or(8).max(8);
        let mut table = format!("{:width$} | actual\n", "expected");
        for i in 0..actual.len().max(expected.len()) {
            let e = expected.get(i).copied().unwrap_or("");
            let a = actual.get(i).copied().unwrap_or("");
            let mark = if e == a { ' ' } else { '!' };
            table.push_str(&format!("{e:width$} {mark} {a}\n"));
        }
        panic!("lines differ:\n{table}");
    }
}

/// A channel of the lines read from `pipe` on a thread.
fn line_by_line(pipe: impl Read + Send + 'static) -> Receiver<String> {
    let (send, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if send.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

/// A running `sockwatch watch` (or `wait`) whose stdout is read line by
/// line on a thread, so the test can wait for lines with a deadline.
pub struct Running {
    pub child: Child,
    lines: Receiver<String>,
    stderr: Receiver<String>,
}

impl Running {
    /// Spawns `sockwatch --source SOURCE ARGS...`.
    pub fn start(source: &str, args: &[&str]) -> Running {
        Running::spawn(command(source, args))
    }

    pub fn spawn(mut command: Command) -> Running {
        let mut child = spawn_piped(&mut command);
        Running {
            lines: line_by_line(child.stdout.take().unwrap()),
            stderr: line_by_line(child.stderr.take().unwrap()),
            child,
        }
    }

    /// Spawns `sockwatch -v --source SOURCE ARGS...` and returns once it
    /// has taken its first snapshot (it says so on stderr with `-v`), so
    /// that whatever the test does next happens while it watches.
    pub fn start_watching(source: &str, args: &[&str]) -> Running {
        let mut command = Command::new(BIN);
        command.args(["-v", "--source", source]).args(args);
        let mut running = Running::spawn(command);
        running.stderr_until("sockwatch: watching");
        running
    }

    /// Skips stderr lines up to the first one containing `needle`, promptly.
    #[track_caller]
    pub fn stderr_until(&mut self, needle: &str) -> String {
        let mut seen = self.stderr_lines_until(needle, PROMPTLY);
        seen.pop().expect("the line with the needle")
    }

    /// The stderr lines up to and including the first one containing
    /// `needle`, which must come within `deadline`.
    #[track_caller]
    pub fn stderr_lines_until(&mut self, needle: &str, deadline: Duration) -> Vec<String> {
        let until = Instant::now() + deadline;
        let mut seen = Vec::new();
        loop {
            match self
                .stderr
                .recv_timeout(until.saturating_duration_since(Instant::now()))
            {
                Ok(line) => {
                    let found = line.contains(needle);
                    seen.push(line);
                    if found {
                        return seen;
                    }
                }
                Err(e) => panic!(
                    "no line with {needle:?} on stderr within {deadline:?} ({e}); saw:\n{}",
                    seen.join("\n")
                ),
            }
        }
    }

    /// The stderr lines written so far and not read yet, without waiting.
    pub fn stderr_so_far(&mut self) -> Vec<String> {
        self.stderr.try_iter().collect()
    }

    /// Asserts that the process is still running after `quiet` (a bounded
    /// wait, used only to show that it did *not* end).
    #[track_caller]
    pub fn still_running_after(&mut self, quiet: Duration) {
        let until = Instant::now() + quiet;
        while Instant::now() < until {
            if let Some(status) = self.child.try_wait().unwrap() {
                let stderr: Vec<String> = self.stderr.try_iter().collect();
                panic!(
                    "sockwatch ended early ({status}); stderr:\n{}",
                    stderr.join("\n")
                );
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// The next line on stderr, promptly.
    #[track_caller]
    pub fn stderr_line(&mut self) -> String {
        match self.stderr.recv_timeout(PROMPTLY) {
            Ok(line) => line,
            Err(e) => panic!("no line on stderr within {PROMPTLY:?}: {e}"),
        }
    }

    /// The next line, within `deadline`.
    #[track_caller]
    pub fn line_within(&mut self, deadline: Duration) -> String {
        match self.lines.recv_timeout(deadline) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => panic!("no line within {deadline:?}"),
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.wait().unwrap();
                panic!("sockwatch ended ({status}) before the expected line");
            }
        }
    }

    /// The next line, promptly.
    #[track_caller]
    pub fn line(&mut self) -> String {
        self.line_within(PROMPTLY)
    }

    /// The next `n` lines.
    #[track_caller]
    pub fn lines(&mut self, n: usize) -> Vec<String> {
        (0..n).map(|_| self.line()).collect()
    }

    /// Asserts that no line arrives for `quiet` (a bounded wait, used only
    /// to show that something did *not* happen).
    #[track_caller]
    pub fn no_line_for(&mut self, quiet: Duration) {
        if let Ok(line) = self.lines.recv_timeout(quiet) {
            panic!("unexpected line: {line}");
        }
    }

    /// Sends `signal` and waits for the exit status.
    pub fn signal(&mut self, signal: i32) -> ExitStatus {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        let until = Instant::now() + PROMPTLY;
        while Instant::now() < until {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            thread::sleep(Duration::from_millis(5));
        }
        let stderr: Vec<String> = self.stderr.try_iter().collect();
        panic!(
            "sockwatch did not exit within {PROMPTLY:?} of signal {signal}; stderr:\n{}",
            stderr.join("\n")
        );
    }

    /// Waits for the process to exit; returns its status and stderr.
    pub fn finish(mut self) -> (ExitStatus, String) {
        let status = wait_deadline(&mut self.child, PROMPTLY);
        let stderr: Vec<String> = self.stderr.try_iter().collect();
        (status, stderr.join("\n"))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An IPv6 event line as `source` prints it: sock_diag knows IPV6_V6ONLY,
/// /proc does not.
pub fn v6(source: &str, line: &str, v6only: bool) -> String {
    match source {
        "netlink" => format!("{line} V6ONLY={}", u8::from(v6only)),
        _ => line.to_owned(),
    }
}

/// Defines one test per source for a fn taking the source name: adding a
/// source to the list runs the whole suite against it.
#[macro_export]
macro_rules! each_source {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn netlink() {
                    super::$name("netlink");
                }
                #[test]
                fn proc() {
                    super::$name("proc");
                }
            }
        )*
    };
}

/// A thread in another network namespace (the one at `path`, or a new one
/// of its own), listening on `address` until told to close, and living
/// until dropped, so that `/proc/<pid>/task/<tid>` stays.
pub struct Inside {
    tid: i32,
    close: Option<mpsc::Sender<()>>,
    closed: mpsc::Receiver<()>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Inside {
    pub fn listen(path: Option<String>, address: &'static str) -> Inside {
        let (tid_tx, tid_rx) = mpsc::channel();
        let (close_tx, close_rx) = mpsc::channel::<()>();
        let (closed_tx, closed_rx) = mpsc::channel();
        let thread = thread::spawn(move || {
            let _own;
            match path {
                Some(path) => {
                    let file = std::fs::File::open(&path).expect("the namespace file");
                    // SAFETY: setns on a descriptor we hold, for this thread only.
                    let entered = unsafe {
                        libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET)
                    };
                    assert_eq!(entered, 0, "setns {path}");
                    bring_loopback_up_here();
                }
                None => _own = Netns::enter(),
            }
            let listener = tcp(address);
            // SAFETY: gettid has no preconditions.
            tid_tx.send(unsafe { libc::gettid() }).unwrap();
            if close_rx.recv().is_ok() {
                drop(listener);
                let _ = closed_tx.send(());
                let _ = close_rx.recv();
            }
        });
        Inside {
            tid: tid_rx.recv_timeout(PROMPTLY).expect("the thread listens"),
            close: Some(close_tx),
            closed: closed_rx,
            thread: Some(thread),
        }
    }

    /// The thread's /proc: `--proc-root` for its network namespace.
    pub fn proc_root(&self) -> String {
        format!("/proc/{}", self.tid)
    }

    /// The namespace file of the thread, by the path of a process in it.
    pub fn ns_path(&self) -> String {
        format!("/proc/{}/task/{}/ns/net", std::process::id(), self.tid)
    }

    /// Closes the listener, and returns once it is closed.
    pub fn close(&mut self) {
        self.close.as_ref().unwrap().send(()).unwrap();
        self.closed.recv_timeout(PROMPTLY).expect("closed");
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        drop(self.close.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `ip link set lo up` in the calling thread's namespace.
fn bring_loopback_up_here() {
    let status = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("ip link");
    // `ip` runs in the namespace of the thread that forks it.
    assert!(status.success(), "ip link set lo up: {status}");
}
