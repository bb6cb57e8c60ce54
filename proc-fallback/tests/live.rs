//! Against the running kernel: the same answers as the procfs crate, and
//! the early stop that makes a poll cost O(listeners).
//!
//! The early-stop test makes a network namespace of its own (20,000
//! connections must not crowd the host's). As root that takes nothing more;
//! as an ordinary user, this binary first enters a user namespace where it is
//! root, at load time (see [`ENTER_USER_NAMESPACE`]), as the main crate's
//! integration tests do.

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};

use socket2::{Domain, Socket, Type};
use std::os::fd::AsRawFd;
use std::time::Instant;

use proc_fallback::{Reader, Table};

fn inode_of(fd: &impl AsRawFd) -> u64 {
    let link = fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
    let link = link.to_str().unwrap();
    link.trim_start_matches("socket:[")
        .trim_end_matches(']')
        .parse()
        .unwrap()
}

/// (address, port, inode) of the listeners we read, limited to `ours`.
fn ours_by_reader(table: Table, ours: &BTreeSet<u64>) -> BTreeSet<(SocketAddr, u64)> {
    let mut out = Vec::new();
    Reader::new("/proc/self").read(table, &mut out).unwrap();
    out.iter()
        .filter(|l| ours.contains(&l.inode))
        .map(|l| (SocketAddr::new(l.addr, l.port), l.inode))
        .collect()
}

#[test]
fn same_listeners_as_the_procfs_crate() {
    let tcp4 = TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp6 = TcpListener::bind("[::1]:0").unwrap();
    let udp4 = UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp6 = UdpSocket::bind("[::1]:0").unwrap();
    // Not listeners: a connection and a connected UDP socket.
    let _client = TcpStream::connect(tcp4.local_addr().unwrap()).unwrap();
    let connected = UdpSocket::bind("127.0.0.1:0").unwrap();
    connected.connect(udp4.local_addr().unwrap()).unwrap();
    let ours: BTreeSet<u64> = [
        inode_of(&tcp4),
        inode_of(&tcp6),
        inode_of(&udp4),
        inode_of(&udp6),
        inode_of(&connected),
    ]
    .into();

    let listen = |e: &procfs::net::TcpNetEntry| e.state == procfs::net::TcpState::Listen;
    let bound = |e: &procfs::net::UdpNetEntry| e.state == procfs::net::UdpState::Close;
    let keep = |addr: SocketAddr, inode: u64| ours.contains(&inode).then_some((addr, inode));
    let procfs_tcp: BTreeSet<_> = procfs::net::tcp()
        .unwrap()
        .into_iter()
        .chain(procfs::net::tcp6().unwrap())
        .filter(listen)
        .filter_map(|e| keep(e.local_address, e.inode))
        .collect();
    let procfs_udp: BTreeSet<_> = procfs::net::udp()
        .unwrap()
        .into_iter()
        .chain(procfs::net::udp6().unwrap())
        .filter(bound)
        .filter_map(|e| keep(e.local_address, e.inode))
        .collect();

    let mut tcp = ours_by_reader(Table::Tcp, &ours);
    tcp.extend(ours_by_reader(Table::Tcp6, &ours));
    let mut udp = ours_by_reader(Table::Udp, &ours);
    udp.extend(ours_by_reader(Table::Udp6, &ours));
    assert_eq!(tcp, procfs_tcp);
    assert_eq!(udp, procfs_udp);
    assert_eq!(tcp.len(), 2);
    assert_eq!(udp.len(), 2, "the connected socket is not a listener");
    assert!(tcp.contains(&(tcp6.local_addr().unwrap(), inode_of(&tcp6))));
}

/// An ordinary user may make network namespaces only inside a user
/// namespace of its own, and a process may enter one only while it has a
/// single thread (unshare(2): EINVAL otherwise). libtest starts a thread per
/// test, so this runs at load time, before `main` (an `.init_array` entry,
/// as the `ctor` crate would make, without the dependency), and maps our
/// uid to root there. [`private_netns`] then only needs CLONE_NEWNET. As
/// root, nothing to do.
#[used]
#[unsafe(link_section = ".init_array")]
static ENTER_USER_NAMESPACE: extern "C" fn() = enter_user_namespace;

extern "C" fn enter_user_namespace() {
    // SAFETY: getters without preconditions.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    if uid == 0 {
        return;
    }
    // SAFETY: unshare takes flags only; the process has one thread yet.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER) } != 0 {
        // private_netns says what this means, in the test that needs it.
        return;
    }
    // setgroups must be denied before an unprivileged gid_map is written.
    let _ = fs::write("/proc/self/setgroups", "deny");
    let _ = fs::write("/proc/self/uid_map", format!("0 {uid} 1"))
        .and_then(|()| fs::write("/proc/self/gid_map", format!("0 {gid} 1")));
}

/// Moves this thread into a network namespace of its own, with lo up.
fn private_netns() {
    // SAFETY: unshare takes flags only.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        panic!(
            "cannot make a network namespace ({}): run as root, or as a user allowed \
             unprivileged user namespaces (sysctl user.max_user_namespaces, \
             kernel.unprivileged_userns_clone)",
            std::io::Error::last_os_error()
        );
    }
    // SAFETY: a datagram socket only to carry the ioctls below.
    let socket = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
    // SAFETY: ifreq is plain data; the ioctls stay within it.
    unsafe {
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            ifr.ifr_name[i] = *b as libc::c_char;
        }
        assert_eq!(libc::ioctl(socket, libc::SIOCGIFFLAGS, &mut ifr), 0);
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        assert_eq!(libc::ioctl(socket, libc::SIOCSIFFLAGS, &mut ifr), 0);
        libc::close(socket);
    }
}

#[test]
fn early_stop_reads_listeners_not_connections() {
    const CONNECTIONS: usize = 20_000;
    private_netns();
    // sysctl files belong to the opener's network namespace: this one.
    fs::write("/proc/sys/net/ipv4/tcp_tw_reuse", "0").unwrap();
    let early = TcpListener::bind("127.0.0.1:8000").unwrap();
    let started = Instant::now();
    let server_addr: SocketAddr = "127.0.0.1:8000".parse().unwrap();
    for i in 0..CONNECTIONS {
        // An explicit source port each time: the kernel's search for a free
        // ephemeral port grows slow among thousands of TIME_WAIT sockets.
        let client = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        let source: SocketAddr = (
            "127.0.0.1".parse::<std::net::IpAddr>().unwrap(),
            20_000 + i as u16,
        )
            .into();
        client.bind(&source.into()).unwrap();
        client.connect(&server_addr.into()).unwrap();
        let (server, _) = early.accept().unwrap();
        // The client closes first, so its side lingers in TIME_WAIT.
        drop(client);
        drop(server);
    }
    let late: Vec<TcpListener> = (0..3)
        .map(|i| TcpListener::bind(("127.0.0.1", 9000 + i)).unwrap())
        .collect();

    // /proc/self/net is the thread group leader's namespace, not ours.
    let root = "/proc/thread-self";
    let mut whole = Vec::new();
    fs::File::open(format!("{root}/net/tcp"))
        .unwrap()
        .read_to_end(&mut whole)
        .unwrap();
    let mut out = Vec::new();
    let stats = Reader::new(root).read(Table::Tcp, &mut out).unwrap();
    println!(
        "{CONNECTIONS} TIME_WAIT sockets made in {:?}; whole net/tcp {} bytes, early-stop read {} bytes in {} lines",
        started.elapsed(),
        whole.len(),
        stats.bytes,
        stats.lines
    );
    let mut ports: Vec<u16> = out.iter().map(|l| l.port).collect();
    ports.sort_unstable();
    assert_eq!(
        ports,
        [8000, 9000, 9001, 9002],
        "every listener, old and new"
    );
    assert!(stats.stopped_early);
    assert!(
        whole.len() > 2_000_000,
        "the file is big: {} bytes",
        whole.len()
    );
    assert!(
        stats.bytes <= 8192,
        "but we read {} bytes of it",
        stats.bytes
    );
    drop(late);
}
