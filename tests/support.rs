//! What every integration test needs: a private network namespace, real
//! sockets in it, and the real `sockwatch` binary run with deadlines.
//!
//! A test calls [`Netns::enter`] first. The namespace belongs to the test's
//! thread (libtest runs each test on a thread of its own), and every process
//! the test spawns inherits it, so tests are hermetic and run in parallel: a
//! fresh namespace has no sockets but the ones the test makes.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, ExitStatus, Stdio};
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
/// its port.
pub fn udp_auto_bound(peer: &str) -> UdpSocket {
    let peer = addr(peer);
    let any = if peer.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = std::net::UdpSocket::bind(any).unwrap();
    // bind(…:0) would also be auto-bound; send to be sure the port is set.
    socket.send_to(b"x", peer).unwrap();
    socket
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
