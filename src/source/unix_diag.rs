//! unix_diag: the listening unix-domain sockets, through sock_diag.
//!
//! One dump answers for the three unix tables: the request names
//! `AF_UNIX` with a state filter of LISTEN (stream and seqpacket listeners)
//! and CLOSE (bound dgram sockets; also stream sockets bound but not
//! listening, which are dropped here), and asks for the name
//! (`UDIAG_SHOW_NAME`), the socket file's device and inode
//! (`UDIAG_SHOW_VFS`, to tell an unlinked or replaced path), the queue
//! lengths (`UDIAG_SHOW_RQLEN`) and the owner (`UDIAG_SHOW_UID`, Linux 5.3).
//! The kernel walks every unix socket of the namespace for it (about 5 ms
//! for 40,000 sockets), since unix sockets have no listening hash.
//!
//! The request and reply are built and read by hand: the
//! netlink-packet-sock-diag crate lacks the CLOSE state and `UDIAG_SHOW_UID`
//! and hides the VFS fields. Unlike /proc/net/unix, the name arrives as a
//! length-delimited attribute, so a name holding a newline cannot forge a
//! row.
//!
//! No destroy group exists for unix sockets: a close is seen at the next
//! read, and an absence is confirmed by reading again.

use crate::endpoint::{Endpoint, Socket, SourceKind, Transport, UnixName, Vfs};

/// `AF_UNIX`.
const AF_UNIX: u8 = 1;
/// `TCP_ESTABLISHED`, `TCP_CLOSE` and `TCP_LISTEN`: the states unix sockets
/// borrow.
const STATE_CLOSE: u8 = 7;
const STATE_LISTEN: u8 = 10;
/// `UDIAG_SHOW_*`.
const UDIAG_SHOW_NAME: u32 = 0x01;
const UDIAG_SHOW_VFS: u32 = 0x02;
const UDIAG_SHOW_RQLEN: u32 = 0x10;
const UDIAG_SHOW_UID: u32 = 0x40;
/// `UNIX_DIAG_*` attributes of a reply.
const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_VFS: u16 = 1;
const UNIX_DIAG_UID: u16 = 7;
/// `SOCK_STREAM`, `SOCK_DGRAM`, `SOCK_SEQPACKET`.
const SOCK_STREAM: u8 = 1;
const SOCK_DGRAM: u8 = 2;
const SOCK_SEQPACKET: u8 = 5;
/// `struct unix_diag_req` and `struct unix_diag_msg`.
const REQ_LEN: usize = 24;
const MSG_LEN: usize = 16;

/// The body of a dump request (after the `nlmsghdr`): `struct
/// unix_diag_req { u8 family, protocol; u16 pad; u32 states, ino, show;
/// u32 cookie[2]; }`, asking for LISTEN and CLOSE sockets with their name,
/// file, queue and owner; cookie all ones (`INET_DIAG_NOCOOKIE`: any).
pub(crate) fn request_body() -> [u8; REQ_LEN] {
    let mut body = [0u8; REQ_LEN];
    body[0] = AF_UNIX;
    let states: u32 = (1 << STATE_LISTEN) | (1 << STATE_CLOSE);
    body[4..8].copy_from_slice(&states.to_ne_bytes());
    let show = UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_RQLEN | UDIAG_SHOW_UID;
    body[12..16].copy_from_slice(&show.to_ne_bytes());
    body[16..24].fill(0xff);
    body
}

/// One reply message (a `unix_diag_msg` and its attributes) as a listening
/// socket: `None` for a socket that is not a listener (a stream socket
/// bound but not listening, an unbound or connected dgram socket) and for a
/// malformed message (`Err(())`, counted by the caller).
pub(crate) fn parse(payload: &[u8]) -> Result<Option<Socket>, ()> {
    if payload.len() < MSG_LEN || payload[0] != AF_UNIX {
        return Err(());
    }
    let (kind, state) = (payload[1], payload[2]);
    let inode = u64::from(u32::from_ne_bytes(payload[4..8].try_into().unwrap()));
    let mut name = None;
    let mut vfs = None;
    let mut uid = None;
    let mut at = MSG_LEN;
    while at + 4 <= payload.len() {
        let len = usize::from(u16::from_ne_bytes([payload[at], payload[at + 1]]));
        let kind = u16::from_ne_bytes([payload[at + 2], payload[at + 3]]) & 0x3fff;
        if len < 4 || at + len > payload.len() {
            return Err(());
        }
        let value = &payload[at + 4..at + len];
        match kind {
            UNIX_DIAG_NAME => name = Some(value),
            UNIX_DIAG_VFS if value.len() >= 8 => {
                let ino = u32::from_ne_bytes(value[0..4].try_into().unwrap());
                let dev = u32::from_ne_bytes(value[4..8].try_into().unwrap());
                // The kernel's own encoding of dev_t: major << 20 | minor.
                vfs = Some(Vfs {
                    major: dev >> 20,
                    minor: dev & 0xf_ffff,
                    ino: u64::from(ino),
                });
            }
            UNIX_DIAG_UID if value.len() >= 4 => {
                uid = Some(u32::from_ne_bytes(value[0..4].try_into().unwrap()));
            }
            _ => {}
        }
        at += (len + 3) & !3;
    }
    let transport = match (kind, state) {
        (SOCK_STREAM, STATE_LISTEN) => Transport::Stream,
        (SOCK_SEQPACKET, STATE_LISTEN) => Transport::Seqpacket,
        (SOCK_DGRAM, STATE_CLOSE) => Transport::Dgram,
        _ => return Ok(None),
    };
    // An unbound socket has no name attribute, or an empty one.
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    let name = match name.split_first() {
        Some((0, rest)) => UnixName::abstract_name(rest),
        _ => {
            // A path arrives with its terminating NUL on some kernels.
            let path = name.strip_suffix(&[0]).unwrap_or(name);
            UnixName::path(path)
        }
    };
    Ok(Some(Socket {
        endpoint: Endpoint::unix(transport, name),
        inode,
        uid,
        cookie: None,
        v6only: None,
        source: SourceKind::Netlink,
        vfs,
        trusted: true,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `unix_diag_msg` of `kind` in `state`, inode 77, with attributes.
    fn message(kind: u8, state: u8, attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut m = vec![AF_UNIX, kind, state, 0];
        m.extend_from_slice(&77u32.to_ne_bytes());
        m.extend_from_slice(&[0xff; 8]);
        for (kind, value) in attrs {
            let len = 4 + value.len() as u16;
            m.extend_from_slice(&len.to_ne_bytes());
            m.extend_from_slice(&kind.to_ne_bytes());
            m.extend_from_slice(value);
            while m.len() % 4 != 0 {
                m.push(0);
            }
        }
        m
    }

    #[test]
    fn request_asks_for_listen_and_close_with_name_file_and_owner() {
        let body = request_body();
        assert_eq!(body[0], 1, "AF_UNIX");
        assert_eq!(
            u32::from_ne_bytes(body[4..8].try_into().unwrap()),
            (1 << 10) | (1 << 7)
        );
        assert_eq!(u32::from_ne_bytes(body[12..16].try_into().unwrap()), 0x53);
    }

    #[test]
    fn listeners_and_what_is_not_one() {
        let mut vfs = Vec::new();
        vfs.extend_from_slice(&1234u32.to_ne_bytes());
        vfs.extend_from_slice(&((259u32 << 20) | 3).to_ne_bytes());
        let uid = 1000u32.to_ne_bytes();
        let path: &[u8] = b"/run/a b\n.sock";
        let stream = message(
            SOCK_STREAM,
            STATE_LISTEN,
            &[
                (UNIX_DIAG_NAME, path),
                (UNIX_DIAG_VFS, &vfs),
                (UNIX_DIAG_UID, &uid),
            ],
        );
        let socket = parse(&stream).unwrap().unwrap();
        assert_eq!(
            socket.endpoint.to_string(),
            r#"PROTO=unix SOCKET_PATH="/run/a b\n.sock" TRANSPORT=stream"#
        );
        assert_eq!(socket.inode, 77);
        assert_eq!(socket.uid, Some(1000));
        assert_eq!(
            socket.vfs,
            Some(Vfs {
                major: 259,
                minor: 3,
                ino: 1234
            })
        );
        let abstract_dgram = message(SOCK_DGRAM, STATE_CLOSE, &[(UNIX_DIAG_NAME, b"\0app")]);
        let socket = parse(&abstract_dgram).unwrap().unwrap();
        assert_eq!(
            socket.endpoint.to_string(),
            "PROTO=unix SOCKET_PATH=@app TRANSPORT=dgram"
        );
        assert_eq!(socket.uid, None, "no UID attribute: unknown");
        let seq = message(SOCK_SEQPACKET, STATE_LISTEN, &[(UNIX_DIAG_NAME, b"@x")]);
        assert!(parse(&seq).unwrap().is_some());
        let bound_only = message(SOCK_STREAM, STATE_CLOSE, &[(UNIX_DIAG_NAME, path)]);
        assert_eq!(parse(&bound_only), Ok(None), "bound, not listening");
        let unbound = message(SOCK_DGRAM, STATE_CLOSE, &[]);
        assert_eq!(parse(&unbound), Ok(None));
        let connected = message(SOCK_DGRAM, 1, &[(UNIX_DIAG_NAME, path)]);
        assert_eq!(parse(&connected), Ok(None));
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        let good = message(SOCK_STREAM, STATE_LISTEN, &[(UNIX_DIAG_NAME, b"/x")]);
        for cut in 0..good.len() {
            let _ = parse(&good[..cut]);
        }
        let mut bad = good.clone();
        bad[MSG_LEN] = 200; // an attribute longer than the message
        assert_eq!(parse(&bad), Err(()));
        assert_eq!(parse(&good[..8]), Err(()));
    }
}
