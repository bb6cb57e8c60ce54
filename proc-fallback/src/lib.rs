//! Streaming reader of the listening sockets in `/proc/net/{tcp,tcp6,udp,udp6}`.
//!
//! Where sock_diag netlink is unavailable (gVisor, WSL1, seccomp-restricted
//! containers), these files are the only source of socket facts. Read
//! naively they are expensive: their size grows with every connection the
//! machine carries, and the kernel formats every line of them on each read.
//! This crate reads them for one question only — which sockets listen — and
//! stops as soon as the answer is known:
//!
//! - **tcp, tcp6**: the kernel prints its listening hash first, then the
//!   established hash (connections, TIME_WAIT, request sockets). Reading
//!   stops at the first line whose state is neither LISTEN (`0A`) nor
//!   SYN_RECV (`03`, which old kernels print among the listeners), so a poll
//!   costs O(listeners), not O(connections). Input is read in small chunks so
//!   that stopping early also spares the kernel the formatting.
//! - **udp, udp6**: bound sockets come in hash order, so the whole file is
//!   read; state `07` (bound, unconnected) counts, `01` (connected) does not.
//!
//! The state column is checked before any address is parsed. Addresses are
//! decoded exactly as the kernel prints them: an IPv4 address is one 32-bit
//! word in host byte order, an IPv6 address four such words; ports are
//! big-endian hex. Malformed lines are skipped and counted, never a panic.
//!
//! The reader keeps its files open and its buffers between polls: a steady
//! poll opens nothing and allocates nothing.

#![deny(missing_docs)]

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

/// One of the four files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// `net/tcp`: IPv4 TCP.
    Tcp,
    /// `net/tcp6`: IPv6 TCP.
    Tcp6,
    /// `net/udp`: IPv4 UDP.
    Udp,
    /// `net/udp6`: IPv6 UDP.
    Udp6,
}

impl Table {
    /// The four tables.
    pub const ALL: [Table; 4] = [Table::Tcp, Table::Tcp6, Table::Udp, Table::Udp6];

    /// The file's name under `net/`.
    pub fn file_name(self) -> &'static str {
        match self {
            Table::Tcp => "tcp",
            Table::Tcp6 => "tcp6",
            Table::Udp => "udp",
            Table::Udp6 => "udp6",
        }
    }

    /// Whether it lists TCP sockets.
    pub fn is_tcp(self) -> bool {
        matches!(self, Table::Tcp | Table::Tcp6)
    }

    /// Whether it lists IPv6 sockets.
    pub fn is_v6(self) -> bool {
        matches!(self, Table::Tcp6 | Table::Udp6)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A listening socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    /// Local address.
    pub addr: IpAddr,
    /// Local port.
    pub port: u16,
    /// Owner's user id.
    pub uid: u32,
    /// Socket inode.
    pub inode: u64,
}

/// What one line says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    /// The column header.
    Header,
    /// A listening socket.
    Listener(Listener),
    /// A socket that does not listen, and may be followed by listeners
    /// (a SYN_RECV request among TCP listeners; any UDP socket).
    Other,
    /// The first line past the TCP listening section: nothing after it
    /// listens.
    End,
}

/// Why a line could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// Fewer columns than the kernel prints.
    #[error("too few columns")]
    TooFewColumns,
    /// The `st` column is not two hex digits.
    #[error("bad state")]
    BadState,
    /// The local address is not 8 (IPv4) or 32 (IPv6) hex digits, as the
    /// table requires.
    #[error("bad address")]
    BadAddress,
    /// The local port is not four hex digits.
    #[error("bad port")]
    BadPort,
    /// The uid or inode is not a decimal number.
    #[error("bad number")]
    BadNumber,
}

/// What a poll read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PollStats {
    /// Lines looked at (the header included).
    pub lines: usize,
    /// Bytes the kernel delivered.
    pub bytes: u64,
    /// Malformed lines skipped.
    pub skipped: usize,
    /// Whether reading stopped before the end of the file.
    pub stopped_early: bool,
}

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be opened (missing, or no permission).
    #[error("failed to open {}: {source}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// Reading failed part way: the poll tells nothing.
    #[error("failed to read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
}

const LISTEN: u8 = 0x0A;
const SYN_RECV: u8 = 0x03;
const UDP_BOUND: u8 = 0x07;

/// Whitespace-separated columns of a line, without allocating.
fn columns(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(|b| b.is_ascii_whitespace())
        .filter(|c| !c.is_empty())
}

fn hex_u32(text: &[u8]) -> Option<u32> {
    if text.is_empty() || text.len() > 8 {
        return None;
    }
    text.iter().try_fold(0u32, |acc, &b| {
        let digit = (b as char).to_digit(16)?;
        Some((acc << 4) | digit)
    })
}

fn decimal(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 20 {
        return None;
    }
    text.iter().try_fold(0u64, |acc, &b| {
        let digit = (b as char).to_digit(10)?;
        acc.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// Decodes the kernel's `%08X` of a 32-bit word stored in host order.
fn host_word(hex: &[u8]) -> Option<[u8; 4]> {
    if hex.len() != 8 {
        return None;
    }
    Some(hex_u32(hex)?.to_ne_bytes())
}

fn address(hex: &[u8], v6: bool) -> Option<IpAddr> {
    if v6 {
        if hex.len() != 32 {
            return None;
        }
        let mut octets = [0u8; 16];
        for (i, chunk) in hex.chunks(8).enumerate() {
            octets[i * 4..i * 4 + 4].copy_from_slice(&host_word(chunk)?);
        }
        Some(IpAddr::V6(Ipv6Addr::from(octets)))
    } else {
        Some(IpAddr::V4(Ipv4Addr::from(host_word(hex)?)))
    }
}

/// Reads one line of `table` (without its newline). Pure: the fuzz target
/// calls it with anything.
pub fn parse_line(table: Table, line: &[u8]) -> Result<Line, LineError> {
    let mut cols = columns(line);
    let slot = cols.next().ok_or(LineError::TooFewColumns)?;
    if slot == b"sl" {
        return Ok(Line::Header);
    }
    let local = cols.next().ok_or(LineError::TooFewColumns)?;
    let _remote = cols.next().ok_or(LineError::TooFewColumns)?;
    let state = cols.next().ok_or(LineError::TooFewColumns)?;
    if state.len() != 2 {
        return Err(LineError::BadState);
    }
    let state = hex_u32(state).ok_or(LineError::BadState)? as u8;
    // The state decides before any address is parsed.
    match (table.is_tcp(), state) {
        (true, LISTEN) | (false, UDP_BOUND) => {}
        (true, SYN_RECV) | (false, _) => return Ok(Line::Other),
        (true, _) => return Ok(Line::End),
    }
    let mut rest = cols.skip(3); // tx:rx queues, timer, retransmits
    let uid = rest.next().ok_or(LineError::TooFewColumns)?;
    let _timeout = rest.next().ok_or(LineError::TooFewColumns)?;
    let inode = rest.next().ok_or(LineError::TooFewColumns)?;
    // The kernel prints a reference count and a pointer after the inode:
    // without them, the line was cut short and its inode may be too.
    if rest.nth(1).is_none() {
        return Err(LineError::TooFewColumns);
    }

    let colon = local
        .iter()
        .position(|&b| b == b':')
        .ok_or(LineError::BadAddress)?;
    let (addr_hex, port_hex) = (&local[..colon], &local[colon + 1..]);
    let addr = address(addr_hex, table.is_v6()).ok_or(LineError::BadAddress)?;
    if port_hex.len() != 4 {
        return Err(LineError::BadPort);
    }
    let port = hex_u32(port_hex).ok_or(LineError::BadPort)? as u16;
    let uid = decimal(uid)
        .and_then(|u| u32::try_from(u).ok())
        .ok_or(LineError::BadNumber)?;
    let inode = decimal(inode).ok_or(LineError::BadNumber)?;
    Ok(Line::Listener(Listener {
        addr,
        port,
        uid,
        inode,
    }))
}

/// Reads the listeners of `table` from `input`, appending them to `out`.
/// `line_buf` is reused between calls. Bytes are counted by the caller's
/// reader, if it wants them: `stats.bytes` stays 0 here.
pub fn scan<R: BufRead>(
    table: Table,
    mut input: R,
    line_buf: &mut Vec<u8>,
    out: &mut Vec<Listener>,
) -> io::Result<PollStats> {
    let mut stats = PollStats::default();
    loop {
        line_buf.clear();
        if input.read_until(b'\n', line_buf)? == 0 {
            return Ok(stats);
        }
        stats.lines += 1;
        let Some(line) = line_buf.strip_suffix(b"\n") else {
            // The kernel ends every line; this one was cut short.
            stats.skipped += 1;
            return Ok(stats);
        };
        match parse_line(table, line) {
            Ok(Line::Listener(listener)) => out.push(listener),
            Ok(Line::Header | Line::Other) => {}
            Ok(Line::End) => {
                stats.stopped_early = true;
                return Ok(stats);
            }
            Err(_) => stats.skipped += 1,
        }
    }
}

/// Counts what the kernel hands over, under the line reader.
struct Counting<R> {
    inner: R,
    bytes: u64,
}

impl<R: Seek> Seek for Counting<R> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.inner.seek(pos)
    }
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Size of each read: small, so that stopping early spares the kernel
/// formatting lines nobody reads (a TCP line is 150 bytes).
const CHUNK: usize = 4096;

/// Polls the four files under one root, keeping them open.
pub struct Reader {
    root: PathBuf,
    files: [Option<BufReader<Counting<File>>>; 4],
    line: Vec<u8>,
}

impl Reader {
    /// A reader of `<root>/net/*`: `/proc` for this process's network
    /// namespace, `/proc/<pid>` for another process's, `/proc/thread-self`
    /// for the calling thread's.
    pub fn new(root: impl Into<PathBuf>) -> Reader {
        Reader {
            root: root.into(),
            files: [None, None, None, None],
            line: Vec::with_capacity(256),
        }
    }

    /// The path of a table's file.
    pub fn path(&self, table: Table) -> PathBuf {
        self.root.join("net").join(table.file_name())
    }

    /// Appends the listeners of `table` to `out`. On error `out` may hold
    /// part of the answer; discard it.
    pub fn read(&mut self, table: Table, out: &mut Vec<Listener>) -> Result<PollStats, Error> {
        let slot = &mut self.files[table.index()];
        let reader = match slot {
            Some(reader) => {
                // Re-reading from the start makes the kernel print afresh.
                reader
                    .seek(SeekFrom::Start(0))
                    .map_err(|source| Error::Read {
                        path: self.root.join("net").join(table.file_name()),
                        source,
                    })?;
                reader
            }
            None => {
                let path = self.root.join("net").join(table.file_name());
                let file = File::open(&path).map_err(|source| Error::Open { path, source })?;
                slot.insert(BufReader::with_capacity(
                    CHUNK,
                    Counting {
                        inner: file,
                        bytes: 0,
                    },
                ))
            }
        };
        reader.get_mut().bytes = 0;
        let result = scan(table, &mut *reader, &mut self.line, out);
        let bytes = reader.get_ref().bytes;
        match result {
            Ok(stats) => Ok(PollStats { bytes, ..stats }),
            Err(source) => {
                // A fresh open next time, rather than a reader in an
                // unknown state.
                *slot = None;
                Err(Error::Read {
                    path: self.path(table),
                    source,
                })
            }
        }
    }
}

/// `net.ipv6.bindv6only`: whether `::` listeners are IPv6-only unless they
/// say otherwise (/proc has no per-socket flag). Read from
/// `<root>/sys/net/ipv6/bindv6only` when the root has it (`/proc`), else
/// from `/proc/sys/net/ipv6/bindv6only`: sysctl files belong to the reader's
/// network namespace, and `/proc/<pid>` has no `sys`.
pub fn bindv6only(root: &Path) -> Result<bool, Error> {
    let own = root.join("sys/net/ipv6/bindv6only");
    let path = if own.exists() {
        own
    } else {
        PathBuf::from("/proc/sys/net/ipv6/bindv6only")
    };
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Open {
        path: path.clone(),
        source,
    })?;
    Ok(text.trim() == "1")
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTEN_LINE: &[u8] = b"   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 100 0 0 10 0";

    #[test]
    fn a_listen_line() {
        let line = parse_line(Table::Tcp, LISTEN_LINE).unwrap();
        let expected = Listener {
            addr: if cfg!(target_endian = "little") {
                "127.0.0.1".parse().unwrap()
            } else {
                "1.0.0.127".parse().unwrap()
            },
            port: 8080,
            uid: 1000,
            inode: 4242,
        };
        assert_eq!(line, Line::Listener(expected));
    }

    #[test]
    fn state_decides_before_the_address() {
        // A garbled address on a TIME_WAIT line is never looked at.
        let time_wait = b"   9: garbage 00000000:0000 06 00000000:00000000 03:00000000 00000000     0        0 0 3";
        assert_eq!(parse_line(Table::Tcp, time_wait), Ok(Line::End));
        let syn_recv = b"   9: garbage 00000000:0000 03 00000000:00000000 03:00000000 00000000     0        0 0 3";
        assert_eq!(parse_line(Table::Tcp, syn_recv), Ok(Line::Other));
        let connected = b"   9: garbage 00000000:0000 01 00000000:00000000 03:00000000 00000000     0        0 0 3";
        assert_eq!(parse_line(Table::Udp, connected), Ok(Line::Other));
    }

    #[test]
    fn malformed_lines_are_errors_not_panics() {
        assert_eq!(parse_line(Table::Tcp, b""), Err(LineError::TooFewColumns));
        assert_eq!(
            parse_line(Table::Tcp, b"   0: 0100007F:1F90"),
            Err(LineError::TooFewColumns)
        );
        assert_eq!(
            parse_line(
                Table::Tcp,
                b"   0: 0100007F:1F90 00000000:0000 XZ 0 0 0 0 0 1"
            ),
            Err(LineError::BadState)
        );
        let v4_in_v6 = LISTEN_LINE;
        assert_eq!(
            parse_line(Table::Tcp6, v4_in_v6),
            Err(LineError::BadAddress)
        );
        let bad_port = b"   0: 0100007F:1F9 00000000:0000 0A 0:0 00:0 0 0 0 1 1 0";
        assert_eq!(parse_line(Table::Tcp, bad_port), Err(LineError::BadPort));
        let bad_inode = b"   0: 0100007F:1F90 00000000:0000 0A 0:0 00:0 0 0 0 12x 1 0";
        assert_eq!(parse_line(Table::Tcp, bad_inode), Err(LineError::BadNumber));
        let cut_after_inode = b"   0: 0100007F:1F90 00000000:0000 0A 0:0 00:0 0 0 0 12";
        assert_eq!(
            parse_line(Table::Tcp, cut_after_inode),
            Err(LineError::TooFewColumns)
        );
        for cut in 0..LISTEN_LINE.len() {
            let _ = parse_line(Table::Tcp, &LISTEN_LINE[..cut]);
            let _ = parse_line(Table::Udp6, &LISTEN_LINE[..cut]);
        }
    }
}
