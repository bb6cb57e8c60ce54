//! The benchmarks' laboratory: a private network namespace holding L
//! listeners and B background TCP sockets in TIME_WAIT.
//!
//! TIME_WAIT sockets are the cheap way to load the kernel's established
//! hash: they hold no file descriptor (RLIMIT_NOFILE may be 20k here and
//! cannot be raised), yet every one of them is a line of /proc/net/tcp. They
//! live 60 s, so a lab is made afresh for each group of measurements.

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Instant;

use socket2::{Domain, Socket, Type};

#[path = "../../tests/netns.rs"]
mod netns;

/// Where the background connections go (clients come from 127.0.0.2, so
/// their explicit ports never clash with the listeners on 127.0.0.1).
const SINK: &str = "127.0.0.1:7999";

/// A namespace's worth of sockets, kept open while it lives.
pub struct Lab {
    _listeners: Vec<TcpListener>,
    _sink: TcpListener,
}

/// Moves the calling thread (and so every thread and process it starts
/// later) into a new network namespace with `lo` up, where loopback does
/// not recycle TIME_WAIT sockets early.
fn enter_fresh_netns() {
    netns::Netns::enter();
    fs::write("/proc/sys/net/ipv4/tcp_tw_reuse", "0").unwrap();
}

impl Lab {
    /// A fresh namespace with `listeners` TCP listeners on 127.0.0.1 from
    /// port 20000 up (plus the one on port 7999 that the background
    /// connections go to) and `background` TIME_WAIT sockets.
    pub fn new(listeners: usize, background: usize) -> Lab {
        enter_fresh_netns();
        let sink = TcpListener::bind(SINK).unwrap();
        let started = Instant::now();
        let server: SocketAddr = SINK.parse().unwrap();
        for i in 0..background {
            let client = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
            let port = 10_000 + i as u16;
            let source: SocketAddr = ([127, 0, 0, 2], port).into();
            client.bind(&source.into()).unwrap();
            client.connect(&server.into()).unwrap();
            let (accepted, _) = sink.accept().unwrap();
            drop(TcpStream::from(client)); // closes first: TIME_WAIT
            drop(accepted);
        }
        let listeners = (0..listeners)
            .map(|i| TcpListener::bind(("127.0.0.1", 20_000 + i as u16)).unwrap())
            .collect();
        if background > 0 {
            eprintln!(
                "lab: {background} TIME_WAIT sockets in {:?}",
                started.elapsed()
            );
        }
        Lab {
            _listeners: listeners,
            _sink: sink,
        }
    }
}

/// Bytes in `/proc/net/tcp` now: what a full read costs the kernel.
pub fn proc_net_tcp_size() -> usize {
    fs::read("/proc/self/net/tcp").map(|b| b.len()).unwrap_or(0)
}

/// What naive tools do: read and parse /proc/net/tcp and tcp6 in full (the
/// procfs crate), and count the listeners.
pub fn procfs_listening() -> usize {
    procfs::net::tcp()
        .unwrap()
        .into_iter()
        .chain(procfs::net::tcp6().unwrap())
        .filter(|e| e.state == procfs::net::TcpState::Listen)
        .count()
}
