//! sock_diag netlink: the default source.
//!
//! Two sockets, both unprivileged:
//! - a **dump** socket, asked for one table at a time with a kernel-side state
//!   filter: TCP `LISTEN` only, which makes the kernel walk the listening hash
//!   and never the established one, so a poll costs O(listeners) however many
//!   connections the machine has; UDP `CLOSE` only (bound, unconnected), with
//!   a bytecode filter that drops auto-bound client sockets;
//! - a **destroy** socket, subscribed to the `SKNLGRP_INET{,6}_{TCP,UDP}_DESTROY`
//!   multicast groups: the kernel pushes a message for every freed TCP or UDP
//!   socket of this network namespace. It carries the socket's cookie (inode
//!   and uid are 0), which we match against the listeners we know.
//!
//! Unix sockets are dumped by the same socket and loop, one request for the
//! three unix tables (see `unix_diag.rs`); no destroy group exists for them.
//!
//! The dump loop follows iproute2's `rtnl_dump_filter_l` rather than the
//! crate's example: a 32 KiB buffer, every message of a datagram walked by its
//! aligned length, sequence number and port id checked, `NLMSG_ERROR` an
//! error, `NLMSG_DONE` carrying a possible negative errno (ENOENT when the
//! protocol's diag module is missing), and `NLM_F_DUMP_INTR` (the tables
//! changed under the walk) answered by dumping again.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::Path;
use std::time::Duration;

use netlink_packet_core::{Emitable, Parseable};
use netlink_packet_sock_diag::constants::{
    AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP, SOCK_DIAG_BY_FAMILY,
};
use netlink_packet_sock_diag::inet::{
    ExtensionFlags, InetRequest, InetResponse, SocketId, StateFlags, nlas::Nla,
};
use netlink_sys::{Socket as NlSocket, SocketAddr, protocols::NETLINK_SOCK_DIAG};

use super::unix_diag;
use super::{Pushed, Source, SourceError};
use crate::endpoint::{Endpoint, Family, Socket, SourceKind, Table, Transport};
use crate::sys;

/// Receive buffer: what iproute2 uses, and the most a dump datagram holds.
const RECV_BUF: usize = 32 * 1024;
/// How often an interrupted dump (`NLM_F_DUMP_INTR`) is tried again before the
/// poll is given up as transient.
const DUMP_ATTEMPTS: usize = 4;
/// A dump the kernel never finishes must not hang `wait` forever.
const DUMP_TIMEOUT: Duration = Duration::from_secs(2);
/// Destroy events arrive for every freed socket; a roomy buffer makes
/// `ENOBUFS` (and the resync it forces) rare on busy machines.
const DESTROY_RCVBUF: libc::c_int = 1 << 20;

const NLMSG_HDRLEN: usize = 16;
const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_OVERRUN: u16 = 4;
const NLM_F_REQUEST: u16 = 0x01;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_DUMP_INTR: u16 = 0x10;
/// `TCPDIAG_GETSOCK`: the original inet_diag request, still served. Unlike
/// `SOCK_DIAG_BY_FAMILY` it accepts `AF_UNSPEC`, so one walk of the
/// listening hash answers for IPv4 and IPv6 together.
const TCPDIAG_GETSOCK: u16 = 18;

/// `INET_DIAG_REQ_BYTECODE`, the request attribute holding a filter program.
const INET_DIAG_REQ_BYTECODE: u16 = 1;
/// `INET_DIAG_BC_JMP`: always takes the "no" branch.
const INET_DIAG_BC_JMP: u8 = 1;
/// `INET_DIAG_BC_AUTO`: true when the socket's port was chosen by the kernel
/// (no `SOCK_BINDPORT_LOCK`), i.e. a client that sent without binding.
const INET_DIAG_BC_AUTO: u8 = 6;

/// The destroy multicast groups (`SKNLGRP_*` in linux/sock_diag.h).
const SKNLGRP_INET_TCP_DESTROY: u32 = 1;
const SKNLGRP_INET_UDP_DESTROY: u32 = 2;
const SKNLGRP_INET6_TCP_DESTROY: u32 = 3;
const SKNLGRP_INET6_UDP_DESTROY: u32 = 4;

/// The bytecode that keeps only sockets whose port was bound explicitly.
///
/// The kernel runs the program from the start: each op jumps `yes` or `no`
/// bytes ahead, and the socket is accepted when the program counter lands
/// exactly on the end, rejected when it jumps past it. There is no "not", so
/// iproute2's idiom is used: the test followed by an unconditional jump.
///
/// ```text
/// offset 0: { code: AUTO, yes: 4, no: 8 }  auto-bound  -> offset 4
///                                           bound      -> offset 8 = end: accept
/// offset 4: { code: JMP,  yes: 4, no: 8 }  always "no" -> offset 12 > end: reject
/// ```
///
/// Each op is `struct inet_diag_bc_op { u8 code; u8 yes; u16 no; }`, `no` in
/// host byte order. The kernel's audit accepts this: every `yes` walk lands
/// on the end, and every `no` is a multiple of 4 within `len + 4`.
pub(crate) fn not_auto_bytecode() -> [u8; 8] {
    let [n0, n1] = 8u16.to_ne_bytes();
    [INET_DIAG_BC_AUTO, 4, n0, n1, INET_DIAG_BC_JMP, 4, n0, n1]
}

/// The whole dump request for one table: `nlmsghdr` (16 bytes), then
/// `inet_diag_req_v2` (56 bytes), then for UDP an `nlattr` of type
/// `INET_DIAG_REQ_BYTECODE` (4-byte header + 8 bytes of [`not_auto_bytecode`]).
///
/// The crate emits the request body but knows no bytecode, so the attribute
/// is appended here and `nlmsg_len` covers it.
pub(crate) fn dump_request(table: Table, seq: u32) -> Vec<u8> {
    let socket_id = empty_socket_id(table.family);
    let mut msg = inet_request(table, socket_id, NLM_F_REQUEST | NLM_F_DUMP, seq);
    if table.transport == Transport::Udp {
        let code = not_auto_bytecode();
        let attr_len = 4 + code.len() as u16;
        msg.extend_from_slice(&attr_len.to_ne_bytes());
        msg.extend_from_slice(&INET_DIAG_REQ_BYTECODE.to_ne_bytes());
        msg.extend_from_slice(&code);
        let len = msg.len() as u32;
        msg[0..4].copy_from_slice(&len.to_ne_bytes());
    }
    msg
}

/// The request for the socket listening on one endpoint, without
/// `NLM_F_DUMP`: the kernel looks it up as it would for a packet (local
/// address and port in the `dst` fields, as udp_diag and inet_diag read
/// them; the peer zero) and answers with one `inet_diag_msg`, or with
/// `NLMSG_ERROR` ENOENT. The cookie is `INET_DIAG_NOCOOKIE` (all ones):
/// "whichever socket serves this endpoint", which also answers for a
/// SO_REUSEPORT group whose members a cookie could not name.
pub(crate) fn lookup_request(table: Table, ip: IpAddr, port: u16, seq: u32) -> Vec<u8> {
    let mut socket_id = empty_socket_id(table.family);
    socket_id.destination_address = ip;
    socket_id.destination_port = port;
    socket_id.cookie = [0xff; 8];
    inet_request(table, socket_id, NLM_F_REQUEST, seq)
}

/// A socket id of `family` with every field zero: no filter.
fn empty_socket_id(family: Family) -> SocketId {
    match family {
        Family::Inet6 => SocketId::new_v6(),
        // Unix tables never get here (see `unix_request`).
        Family::Inet | Family::Unix => SocketId::new_v4(),
    }
}

/// The dump request for every unix listener: `nlmsghdr` (16 bytes) and
/// `unix_diag_req` (24 bytes, see [`unix_diag::request_body`]).
pub(crate) fn unix_request(seq: u32) -> Vec<u8> {
    let body = unix_diag::request_body();
    let mut msg = vec![0u8; NLMSG_HDRLEN + body.len()];
    msg[NLMSG_HDRLEN..].copy_from_slice(&body);
    let len = msg.len() as u32;
    msg[0..4].copy_from_slice(&len.to_ne_bytes());
    msg[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    msg[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    msg[8..12].copy_from_slice(&seq.to_ne_bytes());
    msg
}

/// `nlmsghdr` (16 bytes, `SOCK_DIAG_BY_FAMILY`, `flags`, `seq`; port id 0:
/// the kernel fills in ours) and `inet_diag_req_v2` (56 bytes) asking for
/// `table`'s listeners (TCP `LISTEN`, UDP `CLOSE`) matching `socket_id`.
fn inet_request(table: Table, socket_id: SocketId, flags: u16, seq: u32) -> Vec<u8> {
    let family = match table.family {
        Family::Inet6 => AF_INET6,
        Family::Inet | Family::Unix => AF_INET,
    };
    let (protocol, states) = match table.transport {
        Transport::Udp => (IPPROTO_UDP, StateFlags::CLOSE),
        _ => (IPPROTO_TCP, StateFlags::LISTEN),
    };
    let body = InetRequest {
        family,
        protocol,
        extensions: ExtensionFlags::empty(),
        states,
        socket_id,
    };
    let mut msg = vec![0u8; NLMSG_HDRLEN + body.buffer_len()];
    body.emit(&mut msg[NLMSG_HDRLEN..]);
    let len = msg.len() as u32;
    msg[0..4].copy_from_slice(&len.to_ne_bytes());
    msg[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    msg[6..8].copy_from_slice(&flags.to_ne_bytes());
    msg[8..12].copy_from_slice(&seq.to_ne_bytes());
    msg
}

/// The state a listener of `transport` is in: TCP `LISTEN`, UDP `CLOSE`
/// (bound, not connected).
fn listening_state(transport: Transport) -> u8 {
    match transport {
        Transport::Udp | Transport::Dgram => 7,
        Transport::Tcp | Transport::Stream | Transport::Seqpacket => 10,
    }
}

/// What the reply datagram to a lookup says: `Some(true)` when the socket
/// found is a listener on exactly `endpoint` (the kernel's lookup may find
/// a wildcard socket instead of a gone concrete one), `Some(false)` when
/// none is, `None` when the datagram holds no answer to request `seq`.
fn walk_lookup_datagram(
    datagram: &[u8],
    seq: u32,
    port: u32,
    endpoint: &Endpoint,
    skipped: &mut u64,
) -> io::Result<Option<bool>> {
    for message in Messages::of(datagram) {
        let (header, payload) = message?;
        if header.seq != seq || header.port != port {
            continue;
        }
        match header.kind {
            NLMSG_ERROR => match payload_errno(payload) {
                libc::ENOENT => return Ok(Some(false)),
                0 => {} // an acknowledgement: the answer comes apart
                errno => return Err(io::Error::from_raw_os_error(errno)),
            },
            SOCK_DIAG_BY_FAMILY => match parse_diag(payload) {
                Some(message) => {
                    return Ok(Some(
                        Some(message.addr) == endpoint.ip()
                            && Some(message.port) == endpoint.port()
                            && message.state == listening_state(endpoint.transport),
                    ));
                }
                None => *skipped += 1,
            },
            _ => *skipped += 1,
        }
    }
    Ok(None)
}

/// The legacy request for every listening TCP socket, both families:
/// `nlmsghdr` (16 bytes, type `TCPDIAG_GETSOCK`), then `struct
/// inet_diag_req` (60 bytes): family `AF_UNSPEC`, src_len, dst_len, ext (all
/// 0), the 48-byte socket id (zeros: no filter), `idiag_states` (LISTEN) and
/// `idiag_dbs` (0).
pub(crate) fn tcp_both_families_request(seq: u32) -> Vec<u8> {
    let mut msg = vec![0u8; NLMSG_HDRLEN + 60];
    let len = msg.len() as u32;
    msg[0..4].copy_from_slice(&len.to_ne_bytes());
    msg[4..6].copy_from_slice(&TCPDIAG_GETSOCK.to_ne_bytes());
    msg[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    msg[8..12].copy_from_slice(&seq.to_ne_bytes());
    let states: u32 = 1 << 10; // TCP_LISTEN
    msg[NLMSG_HDRLEN + 52..NLMSG_HDRLEN + 56].copy_from_slice(&states.to_ne_bytes());
    msg
}

/// What a dump asks for, and so which replies belong in its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ask {
    /// One table (`SOCK_DIAG_BY_FAMILY`).
    Table(Table),
    /// TCP listeners of both families (`TCPDIAG_GETSOCK`, `AF_UNSPEC`).
    TcpBothFamilies,
    /// Every unix listener (`AF_UNIX`), the three unix tables at once.
    Unix,
}

impl Ask {
    /// The transport of inet replies (unix replies carry their own type).
    fn transport(self) -> Transport {
        match self {
            Ask::Table(table) => table.transport,
            Ask::TcpBothFamilies | Ask::Unix => Transport::Tcp,
        }
    }

    /// Whether a reply of this family answers the request.
    fn wants(self, family: Family) -> bool {
        match self {
            Ask::Table(table) => table.family == family,
            Ask::TcpBothFamilies => true,
            Ask::Unix => false,
        }
    }

    fn request(self, seq: u32) -> Vec<u8> {
        match self {
            Ask::Table(table) => dump_request(table, seq),
            Ask::TcpBothFamilies => tcp_both_families_request(seq),
            Ask::Unix => unix_request(seq),
        }
    }
}

/// One netlink message header, read from the front of a buffer.
#[derive(Debug, Clone, Copy)]
struct Header {
    len: usize,
    kind: u16,
    flags: u16,
    seq: u32,
    port: u32,
}

impl Header {
    fn parse(buf: &[u8]) -> Option<Header> {
        let word = |at: usize| u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap());
        if buf.len() < NLMSG_HDRLEN {
            return None;
        }
        Some(Header {
            len: word(0) as usize,
            kind: u16::from_ne_bytes([buf[4], buf[5]]),
            flags: u16::from_ne_bytes([buf[6], buf[7]]),
            seq: word(8),
            port: word(12),
        })
    }
}

/// The messages of one datagram, each with its payload, walked by their
/// aligned lengths; a length that runs past the datagram ends the walk with
/// an error (what follows cannot be trusted).
struct Messages<'a> {
    datagram: &'a [u8],
    at: usize,
}

impl<'a> Messages<'a> {
    fn of(datagram: &'a [u8]) -> Messages<'a> {
        Messages { datagram, at: 0 }
    }
}

impl<'a> Iterator for Messages<'a> {
    type Item = io::Result<(Header, &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.datagram.get(self.at..)?;
        let header = Header::parse(rest)?;
        if header.len < NLMSG_HDRLEN || header.len > rest.len() {
            self.at = self.datagram.len();
            return Some(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("malformed netlink message length {}", header.len),
            )));
        }
        self.at += aligned(header.len);
        Some(Ok((header, &rest[NLMSG_HDRLEN..header.len])))
    }
}

/// Netlink messages are padded to 4 bytes.
fn aligned(len: usize) -> usize {
    (len + 3) & !3
}

/// The `int error` that starts an `NLMSG_ERROR` or `NLMSG_DONE` payload, as a
/// positive errno, or 0. The kernel sends 0 or a negative errno; anything
/// else is garbage, reported as EPROTO.
fn payload_errno(payload: &[u8]) -> i32 {
    let raw = payload
        .get(..4)
        .map_or(0, |b| i32::from_ne_bytes(b.try_into().unwrap()));
    match raw {
        0 => 0,
        r if r < 0 && r != i32::MIN => -r,
        _ => libc::EPROTO,
    }
}

/// What one inet_diag message told us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DiagMessage {
    pub(crate) addr: IpAddr,
    pub(crate) port: u16,
    pub(crate) state: u8,
    pub(crate) uid: u32,
    pub(crate) inode: u64,
    pub(crate) cookie: u64,
    pub(crate) v6only: Option<bool>,
    pub(crate) protocol: Option<u8>,
}

/// Decodes an `inet_diag_msg` and its attributes; `None` when malformed.
pub(crate) fn parse_diag(payload: &[u8]) -> Option<DiagMessage> {
    let response = InetResponse::parse(payload).ok()?;
    let header = &response.header;
    let id = &header.socket_id;
    // The kernel writes the cookie as two u32 words in host order, low first.
    let lo = u32::from_ne_bytes(id.cookie[0..4].try_into().unwrap());
    let hi = u32::from_ne_bytes(id.cookie[4..8].try_into().unwrap());
    let mut message = DiagMessage {
        addr: id.source_address,
        port: id.source_port,
        state: header.state,
        uid: header.uid,
        inode: u64::from(header.inode),
        cookie: (u64::from(hi) << 32) | u64::from(lo),
        v6only: None,
        protocol: None,
    };
    for nla in &response.nlas {
        match nla {
            Nla::SkV6Only(v6only) => message.v6only = Some(*v6only),
            Nla::Protocol(protocol) => message.protocol = Some(*protocol),
            _ => {}
        }
    }
    Some(message)
}

/// Walks the messages of one datagram of a dump reply.
///
/// Returns `Ok(true)` when the dump is complete (`NLMSG_DONE` seen).
fn walk_dump_datagram(
    datagram: &[u8],
    seq: u32,
    port: u32,
    ask: Ask,
    interrupted: &mut bool,
    skipped: &mut u64,
    out: &mut Vec<Socket>,
) -> io::Result<bool> {
    for message in Messages::of(datagram) {
        let (header, payload) = message?;
        if header.seq != seq || header.port != port {
            // A reply to an earlier, abandoned request: not ours to read.
            continue;
        }
        if header.flags & NLM_F_DUMP_INTR != 0 {
            *interrupted = true;
        }
        match header.kind {
            NLMSG_DONE => {
                let errno = payload_errno(payload);
                if errno != 0 {
                    return Err(io::Error::from_raw_os_error(errno));
                }
                return Ok(true);
            }
            NLMSG_ERROR => {
                let errno = payload_errno(payload);
                return Err(io::Error::from_raw_os_error(if errno == 0 {
                    libc::EPROTO
                } else {
                    errno
                }));
            }
            NLMSG_NOOP => {}
            NLMSG_OVERRUN => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "netlink overrun",
                ));
            }
            SOCK_DIAG_BY_FAMILY if ask == Ask::Unix => match unix_diag::parse(payload) {
                Ok(Some(socket)) => out.push(socket),
                Ok(None) => {}
                Err(()) => *skipped += 1,
            },
            SOCK_DIAG_BY_FAMILY | TCPDIAG_GETSOCK => match parse_diag(payload) {
                Some(message) if ask.wants(Family::of(&message.addr)) => {
                    out.push(Socket {
                        endpoint: Endpoint::inet(ask.transport(), message.addr, message.port),
                        inode: message.inode,
                        uid: Some(message.uid),
                        cookie: Some(message.cookie),
                        v6only: message.v6only,
                        source: SourceKind::Netlink,
                        vfs: None,
                        trusted: true,
                    });
                }
                _ => *skipped += 1,
            },
            _ => *skipped += 1,
        }
    }
    Ok(false)
}

/// The sock_diag source.
pub struct Netlink {
    dump: NlSocket,
    port: u32,
    seq: u32,
    buf: Vec<u8>,
    destroy: Option<NlSocket>,
    skipped: u64,
    /// Whether the kernel answers `TCPDIAG_GETSOCK` (it has since 2.6).
    combined_tcp: bool,
}

impl Netlink {
    /// Opens the dump socket and, with `destroy`, the subscription to those
    /// tables' destroy groups, both in the network namespace at `netns` (a
    /// `/proc/<pid>/ns/net` file) or, without one, in ours. A subscription
    /// that fails is no reason to give up the source (closing is then seen
    /// by polling): its error comes back beside it.
    pub fn open_in(
        netns: Option<&Path>,
        destroy: Option<&[Table]>,
    ) -> Result<(Netlink, Option<SourceError>), SourceError> {
        let open = || {
            let mut netlink = Netlink::open()?;
            let unsubscribed = destroy.and_then(|tables| netlink.subscribe_destroy(tables).err());
            Ok((netlink, unsubscribed))
        };
        match netns {
            Some(netns) => Netlink::inside(netns, open)?,
            None => open(),
        }
    }

    /// Runs `make` in the network namespace at `netns`, then returns to
    /// ours. Sockets belong to the namespace they were made in, and the
    /// destroy groups a socket joins are those of its namespace: every socket
    /// that watches another namespace is made in here. Entering another
    /// process's namespace needs CAP_SYS_ADMIN.
    pub fn inside<T>(netns: &Path, make: impl FnOnce() -> T) -> Result<T, SourceError> {
        let entering = |cause: io::Error| {
            let mut what = format!("failed to enter the network namespace {}", netns.display());
            if matches!(cause.raw_os_error(), Some(libc::EPERM | libc::EACCES)) {
                what.push_str(" (that needs CAP_SYS_ADMIN; --source proc reads it without)");
            }
            SourceError::classify(what, cause)
        };
        let own = std::fs::File::open("/proc/thread-self/ns/net").map_err(entering)?;
        let target = std::fs::File::open(netns).map_err(entering)?;
        sys::setns(target.as_fd(), libc::CLONE_NEWNET).map_err(entering)?;
        let made = make();
        if let Err(cause) = sys::setns(own.as_fd(), libc::CLONE_NEWNET) {
            return Err(SourceError::Transient {
                what: "failed to return to our network namespace".into(),
                cause,
            });
        }
        Ok(made)
    }

    /// The cookie of the network namespace this socket was made in
    /// (`SO_NETNS_COOKIE`, Linux 5.14), where the kernel tells it.
    pub fn netns_cookie(&self) -> Option<u64> {
        sys::netns_cookie(self.dump.as_fd()).ok()
    }

    /// Opens the dump socket. Errors that mean "not here" (EPERM, EACCES,
    /// EAFNOSUPPORT, EPROTONOSUPPORT) come back as
    /// [`SourceError::Unavailable`].
    pub fn open() -> Result<Netlink, SourceError> {
        let what = "failed to open sock_diag socket";
        let mut dump =
            NlSocket::new(NETLINK_SOCK_DIAG).map_err(|e| SourceError::classify(what, e))?;
        let addr = dump
            .bind_auto()
            .map_err(|e| SourceError::classify(what, e))?;
        sys::set_receive_timeout(dump.as_fd(), DUMP_TIMEOUT)
            .map_err(|e| SourceError::classify(what, e))?;
        Ok(Netlink {
            dump,
            port: addr.port_number(),
            seq: 0,
            buf: Vec::with_capacity(RECV_BUF),
            destroy: None,
            skipped: 0,
            combined_tcp: true,
        })
    }

    /// Joins the destroy groups of `tables`, so that closing is pushed.
    /// Call before the first dump: a socket freed between the dump and the
    /// subscription would otherwise go unseen until the next poll.
    pub fn subscribe_destroy(&mut self, tables: &[Table]) -> Result<(), SourceError> {
        let what = "failed to join sock_diag destroy groups";
        let mut socket =
            NlSocket::new(NETLINK_SOCK_DIAG).map_err(|e| SourceError::classify(what, e))?;
        socket
            .bind_auto()
            .map_err(|e| SourceError::classify(what, e))?;
        // A small buffer only makes ENOBUFS (and resyncs) likelier; failing to
        // grow it is no reason to give up.
        let _ = socket.set_rx_buf_sz(DESTROY_RCVBUF);
        for table in tables {
            let group = match (table.transport, table.family) {
                (Transport::Tcp, Family::Inet) => SKNLGRP_INET_TCP_DESTROY,
                (Transport::Udp, Family::Inet) => SKNLGRP_INET_UDP_DESTROY,
                (Transport::Tcp, Family::Inet6) => SKNLGRP_INET6_TCP_DESTROY,
                (Transport::Udp, Family::Inet6) => SKNLGRP_INET6_UDP_DESTROY,
                // No destroy group exists for unix sockets.
                _ => continue,
            };
            socket
                .add_membership(group)
                .map_err(|e| SourceError::classify(what, e))?;
        }
        socket
            .set_non_blocking(true)
            .map_err(|e| SourceError::classify(what, e))?;
        self.destroy = Some(socket);
        Ok(())
    }

    /// Receives one datagram into `self.buf`, refusing truncated ones.
    fn recv(&mut self) -> io::Result<SocketAddr> {
        self.buf.clear();
        let (len, from) = self.dump.recv_from(&mut self.buf, libc::MSG_TRUNC)?;
        if len > RECV_BUF {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("netlink datagram of {len} bytes truncated"),
            ));
        }
        Ok(from)
    }

    /// One dump attempt. Returns whether the kernel flagged it interrupted.
    fn dump_once(&mut self, ask: Ask, out: &mut Vec<Socket>) -> io::Result<bool> {
        self.seq = self.seq.wrapping_add(1);
        let request = ask.request(self.seq);
        let kernel = SocketAddr::new(0, 0);
        self.dump.send_to(&request, &kernel, 0)?;
        let mut interrupted = false;
        loop {
            let from = self.recv()?;
            if from.port_number() != 0 {
                continue; // only the kernel may answer
            }
            let done = walk_dump_datagram(
                &self.buf,
                self.seq,
                self.port,
                ask,
                &mut interrupted,
                &mut self.skipped,
                out,
            )?;
            if done {
                return Ok(interrupted);
            }
        }
    }
}

impl Netlink {
    /// Whether a socket listens on exactly `endpoint` now, asked of the
    /// kernel directly rather than read from a dump, which may skip rows.
    pub fn lookup(&mut self, endpoint: &Endpoint) -> io::Result<bool> {
        let (Some(ip), Some(port)) = (endpoint.ip(), endpoint.port()) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a unix endpoint has no lookup; dump again",
            ));
        };
        self.seq = self.seq.wrapping_add(1);
        let request = lookup_request(endpoint.table(), ip, port, self.seq);
        self.dump.send_to(&request, &SocketAddr::new(0, 0), 0)?;
        loop {
            let from = self.recv()?;
            if from.port_number() != 0 {
                continue;
            }
            if let Some(found) =
                walk_lookup_datagram(&self.buf, self.seq, self.port, endpoint, &mut self.skipped)?
            {
                return Ok(found);
            }
        }
    }

    /// Dumps `ask`, again while the kernel says the tables changed under
    /// the walk.
    fn dump_asking(&mut self, ask: Ask, out: &mut Vec<Socket>) -> Result<(), SourceError> {
        let what = || match ask {
            Ask::Table(table) => format!("sock_diag dump of {table}"),
            Ask::TcpBothFamilies => "sock_diag dump of tcp and tcp6".to_owned(),
            Ask::Unix => "unix_diag dump".to_owned(),
        };
        let start = out.len();
        for _ in 0..DUMP_ATTEMPTS {
            out.truncate(start);
            match self.dump_once(ask, out) {
                Ok(false) => return Ok(()),
                Ok(true) => continue,
                Err(e) => {
                    out.truncate(start);
                    return Err(SourceError::classify(format!("{} failed", what()), e));
                }
            }
        }
        out.truncate(start);
        Err(SourceError::Transient {
            what: what(),
            cause: io::Error::new(io::ErrorKind::Interrupted, "interrupted repeatedly"),
        })
    }
}

impl Source for Netlink {
    fn kind(&self) -> SourceKind {
        SourceKind::Netlink
    }

    fn read(
        &mut self,
        tables: &[Table],
        out: &mut Vec<Socket>,
        failed: &mut Vec<(Table, SourceError)>,
    ) {
        let tcp4 = Table::new(Transport::Tcp, Family::Inet);
        let tcp6 = Table::new(Transport::Tcp, Family::Inet6);
        let mut rest: Vec<Table> = tables.to_vec();
        if self.combined_tcp && rest.contains(&tcp4) && rest.contains(&tcp6) {
            // One walk of the listening hash for both families.
            match self.dump_asking(Ask::TcpBothFamilies, out) {
                Ok(()) => rest.retain(|t| *t != tcp4 && *t != tcp6),
                // A kernel that refuses the old request still has the new.
                Err(SourceError::Unavailable { .. }) => self.combined_tcp = false,
                Err(e) => {
                    failed.push((tcp6, e.again()));
                    failed.push((tcp4, e));
                    rest.retain(|t| *t != tcp4 && *t != tcp6);
                }
            }
        }
        let unix: Vec<Table> = rest
            .iter()
            .copied()
            .filter(|t| t.family == Family::Unix)
            .collect();
        rest.retain(|t| t.family != Family::Unix);
        if !unix.is_empty() {
            // One walk for the three unix tables; those not asked for are
            // dropped.
            let start = out.len();
            match self.dump_asking(Ask::Unix, out) {
                Ok(()) => {
                    let tail = out.split_off(start);
                    out.extend(
                        tail.into_iter()
                            .filter(|s| unix.contains(&s.endpoint.table())),
                    );
                }
                Err(e) => {
                    for &table in &unix[1..] {
                        failed.push((table, e.again()));
                    }
                    failed.push((unix[0], e));
                }
            }
        }
        for table in rest {
            if let Err(e) = self.dump_asking(Ask::Table(table), out) {
                failed.push((table, e));
            }
        }
    }

    fn confirm(
        &mut self,
        absent: &[Endpoint],
        present: &mut Vec<Endpoint>,
    ) -> Result<(), SourceError> {
        if absent.iter().any(|e| e.family() == Family::Unix) {
            // No lookup by name exists: one more dump is the second look.
            let mut found = Vec::new();
            self.dump_asking(Ask::Unix, &mut found)?;
            present.extend(
                absent
                    .iter()
                    .filter(|e| found.iter().any(|s| s.endpoint == **e))
                    .cloned(),
            );
        }
        for endpoint in absent.iter().filter(|e| e.family() != Family::Unix) {
            match self.lookup(endpoint) {
                Ok(true) => present.push(endpoint.clone()),
                Ok(false) => {}
                Err(e) => {
                    return Err(SourceError::classify(
                        format!("sock_diag lookup of {} failed", endpoint.table()),
                        e,
                    ));
                }
            }
        }
        Ok(())
    }

    fn pushed_fd(&self) -> Option<RawFd> {
        self.destroy.as_ref().map(|s| s.as_raw_fd())
    }

    fn read_pushed(&mut self, closed: &mut Vec<u64>) -> Result<Pushed, SourceError> {
        let Some(socket) = self.destroy.as_ref() else {
            return Ok(Pushed::Complete);
        };
        let mut lost = false;
        loop {
            self.buf.clear();
            match socket.recv_from(&mut self.buf, libc::MSG_TRUNC) {
                Ok((len, from)) => {
                    if from.port_number() != 0 {
                        continue;
                    }
                    if len > RECV_BUF {
                        // Part of a datagram is part of the news: resync.
                        lost = true;
                        continue;
                    }
                    walk_destroy_datagram(&self.buf, &mut self.skipped, closed);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => lost = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(SourceError::Transient {
                        what: "failed to read sock_diag destroy events".into(),
                        cause: e,
                    });
                }
            }
        }
        Ok(if lost { Pushed::Lost } else { Pushed::Complete })
    }

    fn skipped(&self) -> u64 {
        self.skipped
    }
}

/// Collects the cookies of a datagram of destroy events.
fn walk_destroy_datagram(datagram: &[u8], skipped: &mut u64, closed: &mut Vec<u64>) {
    let mut at = 0;
    while at + NLMSG_HDRLEN <= datagram.len() {
        let header = Header::parse(&datagram[at..]).unwrap();
        if header.len < NLMSG_HDRLEN || at + header.len > datagram.len() {
            *skipped += 1;
            return;
        }
        let payload = &datagram[at + NLMSG_HDRLEN..at + header.len];
        at += aligned(header.len);
        match header.kind {
            SOCK_DIAG_BY_FAMILY => match parse_diag(payload) {
                Some(message) => closed.push(message.cookie),
                None => *skipped += 1,
            },
            _ => *skipped += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEQ: u32 = 7;
    const PORT: u32 = 4048;

    fn walk(datagram: &[u8], table: Table) -> (io::Result<bool>, bool, u64, Vec<Socket>) {
        let (mut interrupted, mut skipped, mut out) = (false, 0, Vec::new());
        let done = walk_dump_datagram(
            datagram,
            SEQ,
            PORT,
            Ask::Table(table),
            &mut interrupted,
            &mut skipped,
            &mut out,
        );
        (done, interrupted, skipped, out)
    }

    fn table(transport: Transport, family: Family) -> Table {
        Table::new(transport, family)
    }

    #[test]
    fn bytecode_rejects_auto_bound_sockets() {
        let no = 8u16.to_ne_bytes();
        assert_eq!(
            not_auto_bytecode(),
            [6, 4, no[0], no[1], 1, 4, no[0], no[1]],
            "AUTO {{yes 4, no 8}} then JMP {{yes 4, no 8}}"
        );
    }

    #[test]
    fn tcp_request_asks_for_listen_only() {
        let request = dump_request(table(Transport::Tcp, Family::Inet), 9);
        assert_eq!(request.len(), 16 + 56, "no bytecode for TCP");
        assert_eq!(u32::from_ne_bytes(request[0..4].try_into().unwrap()), 72);
        assert_eq!(u16::from_ne_bytes([request[4], request[5]]), 20);
        assert_eq!(u16::from_ne_bytes([request[6], request[7]]), 0x301);
        assert_eq!(u32::from_ne_bytes(request[8..12].try_into().unwrap()), 9);
        assert_eq!(&request[16..20], &[AF_INET, IPPROTO_TCP, 0, 0]);
        assert_eq!(
            u32::from_ne_bytes(request[20..24].try_into().unwrap()),
            1 << 10,
            "TCP_LISTEN only"
        );
    }

    #[test]
    fn udp_request_carries_bytecode_and_covers_it_in_nlmsg_len() {
        let request = dump_request(table(Transport::Udp, Family::Inet6), 1);
        assert_eq!(request.len(), 16 + 56 + 4 + 8);
        assert_eq!(
            u32::from_ne_bytes(request[0..4].try_into().unwrap()) as usize,
            request.len()
        );
        assert_eq!(&request[16..18], &[AF_INET6, IPPROTO_UDP]);
        assert_eq!(
            u32::from_ne_bytes(request[20..24].try_into().unwrap()),
            1 << 7,
            "TCP_CLOSE only: bound, unconnected"
        );
        let attr = &request[72..];
        assert_eq!(u16::from_ne_bytes([attr[0], attr[1]]), 12, "nla_len");
        assert_eq!(
            u16::from_ne_bytes([attr[2], attr[3]]),
            INET_DIAG_REQ_BYTECODE
        );
        assert_eq!(&attr[4..], &not_auto_bytecode());
    }

    #[test]
    fn combined_tcp_request_is_the_legacy_one_for_both_families() {
        let request = tcp_both_families_request(5);
        assert_eq!(request.len(), 16 + 60);
        assert_eq!(u32::from_ne_bytes(request[0..4].try_into().unwrap()), 76);
        assert_eq!(
            u16::from_ne_bytes([request[4], request[5]]),
            TCPDIAG_GETSOCK
        );
        assert_eq!(request[16], 0, "AF_UNSPEC: both families in one walk");
        assert_eq!(
            u32::from_ne_bytes(request[68..72].try_into().unwrap()),
            1 << 10,
            "idiag_states: LISTEN"
        );
        // Its replies carry the request's type; both families are kept.
        let mut reply = include_bytes!("testdata/dump-tcp6-dual-stack-3000.bin").to_vec();
        reply[4..6].copy_from_slice(&TCPDIAG_GETSOCK.to_ne_bytes());
        let (mut interrupted, mut skipped, mut out) = (false, 0, Vec::new());
        let done = walk_dump_datagram(
            &reply,
            SEQ,
            PORT,
            Ask::TcpBothFamilies,
            &mut interrupted,
            &mut skipped,
            &mut out,
        );
        assert!(done.unwrap(), "NLMSG_DONE ends it");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].endpoint.port(), Some(3000));
    }

    #[test]
    fn captured_tcp4_dump() {
        let bytes = include_bytes!("testdata/dump-tcp4-loopback-8080.bin");
        let (done, interrupted, skipped, out) = walk(bytes, table(Transport::Tcp, Family::Inet));
        assert!(done.unwrap(), "NLMSG_DONE ends the capture");
        assert!(!interrupted);
        assert_eq!(skipped, 0);
        assert_eq!(out.len(), 1);
        let socket = &out[0];
        assert_eq!(
            socket.endpoint.to_string(),
            "PROTO=inet PORT=8080 ADDR=127.0.0.1 TRANSPORT=tcp"
        );
        assert_eq!(socket.inode, 6343);
        assert_eq!(socket.uid, Some(0));
        assert_eq!(socket.v6only, None);
        assert!(socket.cookie.is_some_and(|c| c != 0));
    }

    #[test]
    fn captured_tcp6_dump_reports_dual_stack() {
        let bytes = include_bytes!("testdata/dump-tcp6-dual-stack-3000.bin");
        let (done, _, skipped, out) = walk(bytes, table(Transport::Tcp, Family::Inet6));
        assert!(done.unwrap());
        assert_eq!(skipped, 0);
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].endpoint.to_string(),
            "PROTO=inet6 PORT=3000 ADDR=:: TRANSPORT=tcp"
        );
        assert_eq!(out[0].inode, 6344);
        assert_eq!(out[0].v6only, Some(false));
    }

    #[test]
    fn captured_udp6_dump_reports_v6only() {
        let bytes = include_bytes!("testdata/dump-udp6-v6only-5353.bin");
        let (done, _, _, out) = walk(bytes, table(Transport::Udp, Family::Inet6));
        assert!(done.unwrap());
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].endpoint.to_string(),
            "PROTO=inet6 PORT=5353 ADDR=::1 TRANSPORT=udp"
        );
        assert_eq!(out[0].inode, 6345);
        assert_eq!(out[0].v6only, Some(true));
    }

    #[test]
    fn captured_unix_dump() {
        let bytes = include_bytes!("testdata/dump-unix-listeners.bin");
        let (mut interrupted, mut skipped, mut out) = (false, 0, Vec::new());
        let done = walk_dump_datagram(
            bytes,
            SEQ,
            PORT,
            Ask::Unix,
            &mut interrupted,
            &mut skipped,
            &mut out,
        );
        assert!(done.unwrap(), "NLMSG_DONE ends the capture");
        assert_eq!(skipped, 0);
        let listed: Vec<(String, u64)> = out
            .iter()
            .map(|s| (s.endpoint.to_string(), s.inode))
            .collect();
        let mut listed = listed;
        listed.sort();
        assert_eq!(
            listed,
            [
                (
                    "PROTO=unix SOCKET_PATH=/tmp/cap/app.sock TRANSPORT=stream".to_owned(),
                    194895296
                ),
                (
                    "PROTO=unix SOCKET_PATH=/tmp/cap/log TRANSPORT=dgram".to_owned(),
                    194895298
                ),
                (
                    "PROTO=unix SOCKET_PATH=@sw-seq TRANSPORT=seqpacket".to_owned(),
                    194895297
                ),
            ],
            "the bound-only stream socket is no listener"
        );
        let app = out.iter().find(|s| s.inode == 194895296).unwrap();
        assert_eq!(
            app.vfs,
            Some(crate::endpoint::Vfs {
                major: 254,
                minor: 0,
                ino: 10043479
            })
        );
        assert_eq!(app.uid, Some(0));
        let seq = out.iter().find(|s| s.inode == 194895297).unwrap();
        assert_eq!(seq.vfs, None, "an abstract name has no file");
    }

    #[test]
    fn replies_to_other_requests_are_ignored() {
        let bytes = include_bytes!("testdata/dump-tcp4-loopback-8080.bin");
        let (mut interrupted, mut skipped, mut out) = (false, 0, Vec::new());
        let done = walk_dump_datagram(
            bytes,
            SEQ + 1,
            PORT,
            Ask::Table(table(Transport::Tcp, Family::Inet)),
            &mut interrupted,
            &mut skipped,
            &mut out,
        );
        assert!(!done.unwrap(), "a stale DONE does not end our dump");
        assert!(out.is_empty());
    }

    /// A message of `kind` with an `int error` payload.
    fn errno_message(kind: u16, flags: u16, errno: i32) -> Vec<u8> {
        let mut message = Vec::new();
        message.extend_from_slice(&20u32.to_ne_bytes());
        message.extend_from_slice(&kind.to_ne_bytes());
        message.extend_from_slice(&flags.to_ne_bytes());
        message.extend_from_slice(&SEQ.to_ne_bytes());
        message.extend_from_slice(&PORT.to_ne_bytes());
        message.extend_from_slice(&(-errno).to_ne_bytes());
        message
    }

    #[test]
    fn done_with_an_errno_is_an_error() {
        let message = errno_message(NLMSG_DONE, 0, libc::ENOENT);
        let (done, ..) = walk(&message, table(Transport::Udp, Family::Inet));
        let error = done.unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ENOENT));
        let classified = SourceError::classify("dump", error);
        assert!(
            classified.is_unavailable(),
            "a missing diag module means fall back"
        );
    }

    #[test]
    fn nlmsg_error_is_an_error() {
        let message = errno_message(NLMSG_ERROR, 0, libc::EINVAL);
        let (done, ..) = walk(&message, table(Transport::Tcp, Family::Inet));
        assert_eq!(done.unwrap_err().raw_os_error(), Some(libc::EINVAL));
    }

    #[test]
    fn dump_intr_is_reported() {
        let message = errno_message(NLMSG_DONE, NLM_F_DUMP_INTR, 0);
        let (done, interrupted, ..) = walk(&message, table(Transport::Tcp, Family::Inet));
        assert!(done.unwrap());
        assert!(interrupted, "the caller dumps again");
    }

    #[test]
    fn a_length_past_the_datagram_is_an_error_not_a_panic() {
        let mut bytes = include_bytes!("testdata/dump-tcp4-loopback-8080.bin").to_vec();
        bytes[0..4].copy_from_slice(&4096u32.to_ne_bytes());
        let (done, ..) = walk(&bytes, table(Transport::Tcp, Family::Inet));
        assert_eq!(done.unwrap_err().kind(), io::ErrorKind::InvalidData);
        for cut in 0..bytes.len() {
            let _ = walk(&bytes[..cut], table(Transport::Tcp, Family::Inet));
        }
    }

    #[test]
    fn a_garbled_message_is_skipped_and_counted() {
        let good = include_bytes!("testdata/dump-tcp4-loopback-8080.bin");
        let first_len = u32::from_ne_bytes(good[0..4].try_into().unwrap()) as usize;
        let mut bytes = good.to_vec();
        // Shrink the first message so its payload is too short for an
        // inet_diag_msg; the walk must skip it and still reach DONE.
        let short = 16 + 8;
        bytes[0..4].copy_from_slice(&(short as u32).to_ne_bytes());
        bytes.drain(short..first_len);
        let (done, _, skipped, out) = walk(&bytes, table(Transport::Tcp, Family::Inet));
        assert!(done.unwrap());
        assert_eq!(skipped, 1);
        assert!(out.is_empty());
    }

    /// What the fuzz target does, on stable: thousands of mutations of the
    /// captured replies (flipped bytes, lengths, cut ends) must never panic.
    #[test]
    fn mutated_replies_never_panic() {
        let seeds: [&[u8]; 4] = [
            include_bytes!("testdata/dump-tcp4-loopback-8080.bin"),
            include_bytes!("testdata/dump-tcp6-dual-stack-3000.bin"),
            include_bytes!("testdata/dump-udp6-v6only-5353.bin"),
            include_bytes!("testdata/dump-unix-listeners.bin"),
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..20_000 {
            let mut bytes = seeds[round % seeds.len()].to_vec();
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % bytes.len();
                bytes[at] = next() as u8;
            }
            let cut = (next() as usize) % (bytes.len() + 1);
            fuzzing::walk_datagram(&bytes[..cut]);
            fuzzing::walk_datagram(&bytes);
        }
    }

    #[test]
    fn destroy_messages_yield_cookies() {
        // Destroy events have the dump reply's layout (seq and port id 0).
        let bytes = include_bytes!("testdata/dump-tcp6-dual-stack-3000.bin");
        let first_len = u32::from_ne_bytes(bytes[0..4].try_into().unwrap()) as usize;
        let (_, _, _, dumped) = walk(bytes, table(Transport::Tcp, Family::Inet6));
        let (mut skipped, mut closed) = (0, Vec::new());
        walk_destroy_datagram(&bytes[..first_len], &mut skipped, &mut closed);
        assert_eq!(closed, vec![dumped[0].cookie.unwrap()]);
        assert_eq!(skipped, 0);
    }
}

/// Entry points for the fuzz target (fuzz/): the datagram walkers, fed
/// arbitrary bytes. Not an API.
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    /// Walks `data` as a dump reply (for every table and the combined TCP
    /// request) and as a datagram of destroy events. Must never panic.
    pub fn walk_datagram(data: &[u8]) {
        let seq = data
            .get(8..12)
            .map_or(0, |b| u32::from_ne_bytes(b.try_into().unwrap()));
        let port = data
            .get(12..16)
            .map_or(0, |b| u32::from_ne_bytes(b.try_into().unwrap()));
        let asks = Table::ALL.map(Ask::Table);
        for ask in asks.into_iter().chain([Ask::TcpBothFamilies, Ask::Unix]) {
            let (mut interrupted, mut skipped, mut out) = (false, 0, Vec::new());
            let _ = walk_dump_datagram(
                data,
                seq,
                port,
                ask,
                &mut interrupted,
                &mut skipped,
                &mut out,
            );
        }
        let (mut skipped, mut closed) = (0, Vec::new());
        walk_destroy_datagram(data, &mut skipped, &mut closed);
    }
}
