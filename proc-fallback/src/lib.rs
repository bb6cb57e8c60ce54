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
//!
//! The files are input, not trusted: a root given by the user may hold
//! anything under `net/`. So every read is bounded. Only regular files are
//! read (procfs files are regular files of size 0), checked with `fstat`
//! after an open that cannot block, so a FIFO or a device is refused rather
//! than read forever; no line is buffered past [`MAX_LINE`] bytes (a longer
//! one is skipped and counted, as any malformed line); one read of a table
//! stops with an error after [`MAX_TABLE_BYTES`]; a file that does not start
//! with the kernel's header line is not a socket table, and is an error
//! rather than a table with nothing in it.

#![deny(missing_docs)]

pub mod unix;

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
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
    /// Whether the first line was the kernel's column header (`  sl  ...`).
    pub header: bool,
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
    /// The path is not a regular file (a FIFO, a device, a socket, a
    /// directory): reading it could block or never end, so it is refused.
    #[error("refusing {}: it is {kind}, not a regular file", path.display())]
    NotAFile {
        /// The file.
        path: PathBuf,
        /// What it is instead: "a FIFO", "a character device", ...
        kind: &'static str,
    },
    /// One read went on past [`MAX_TABLE_BYTES`]: not a table the kernel
    /// prints (a huge or endless file planted in its place).
    #[error(
        "stopped reading {} after {limit} bytes: no kernel socket table is that large",
        path.display()
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The bound that was reached.
        limit: u64,
    },
    /// The content is not what the kernel writes there.
    #[error("{} is not what the kernel writes there: {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// The longest line kept, newline excluded. The kernel's lines are 150
/// bytes (tcp) to about 180 (udp6 with its drop counter); a longer one is
/// not the kernel's, and is skipped without ever being buffered whole.
pub const MAX_LINE: usize = 4096;

/// The most bytes one read of one table takes: 64 MiB, half a million UDP
/// sockets' lines (TCP reads stop at the end of the listeners). Past it the
/// read is an error, so an endless or huge file costs a bounded time and no
/// memory beyond one line.
pub const MAX_TABLE_BYTES: u64 = 64 << 20;

/// The bounds of one scan.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// [`MAX_LINE`].
    line: usize,
    /// [`MAX_TABLE_BYTES`].
    table: u64,
}

impl Limits {
    const DEFAULT: Limits = Limits {
        line: MAX_LINE,
        table: MAX_TABLE_BYTES,
    };
}

/// Why a bounded scan stopped short.
#[derive(Debug)]
enum ScanError {
    /// The reader failed.
    Io(io::Error),
    /// More than `Limits::table` bytes.
    TooLarge,
    /// The first line is not the header, and one was required.
    NoHeader,
}

impl From<io::Error> for ScanError {
    fn from(e: io::Error) -> ScanError {
        ScanError::Io(e)
    }
}

/// What [`next_line`] found.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// A whole line, newline stripped, in the buffer.
    Line,
    /// A line longer than the limit: the buffer holds its start only, and
    /// the rest is still to be skipped ([`skip_line`]).
    TooLong,
    /// The end of the input in the middle of a line (no newline).
    Cut,
    /// The end of the input.
    End,
}

/// Reads the next line into `buf` (cleared first), keeping at most
/// `limits.line` bytes of it, and counts what it takes in `taken`.
fn next_line<R: BufRead>(
    input: &mut R,
    buf: &mut Vec<u8>,
    limits: Limits,
    taken: &mut u64,
) -> Result<Next, ScanError> {
    buf.clear();
    // One byte over each bound tells "at the bound" from "past it".
    let budget = (limits.table + 1).saturating_sub(*taken);
    let cap = budget.min(limits.line as u64 + 1);
    let n = Read::take(&mut *input, cap).read_until(b'\n', buf)? as u64;
    *taken += n;
    if *taken > limits.table {
        return Err(ScanError::TooLarge);
    }
    if n == 0 {
        return Ok(Next::End);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        return Ok(Next::Line);
    }
    Ok(if n < cap { Next::Cut } else { Next::TooLong })
}

/// Skips the rest of a line that [`next_line`] found too long, within the
/// table's bound.
fn skip_line<R: BufRead>(input: &mut R, limits: Limits, taken: &mut u64) -> Result<(), ScanError> {
    let budget = (limits.table + 1).saturating_sub(*taken);
    *taken += Read::take(&mut *input, budget).skip_until(b'\n')? as u64;
    if *taken > limits.table {
        return Err(ScanError::TooLarge);
    }
    Ok(())
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
///
/// Bounded whatever the input: lines longer than [`MAX_LINE`] are skipped
/// and counted in `skipped`, and more than [`MAX_TABLE_BYTES`] is an error
/// of kind [`io::ErrorKind::FileTooLarge`]. A missing header is only noted
/// (`stats.header`): [`Reader::read`] requires one, this does not.
pub fn scan<R: BufRead>(
    table: Table,
    input: R,
    line_buf: &mut Vec<u8>,
    out: &mut Vec<Listener>,
) -> io::Result<PollStats> {
    scan_within(table, input, line_buf, out, Limits::DEFAULT, false).map_err(|e| match e {
        ScanError::Io(e) => e,
        ScanError::TooLarge => io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("more than {MAX_TABLE_BYTES} bytes"),
        ),
        ScanError::NoHeader => unreachable!("no header is required here"),
    })
}

/// [`scan`] within `limits`; with `require_header`, a first line that is
/// not the header ends the scan at once, before anything else is read.
fn scan_within<R: BufRead>(
    table: Table,
    mut input: R,
    line_buf: &mut Vec<u8>,
    out: &mut Vec<Listener>,
    limits: Limits,
    require_header: bool,
) -> Result<PollStats, ScanError> {
    let mut stats = PollStats::default();
    let mut taken = 0;
    loop {
        let next = next_line(&mut input, line_buf, limits, &mut taken)?;
        if next == Next::End {
            return Ok(stats);
        }
        stats.lines += 1;
        if stats.lines == 1 {
            stats.header = next == Next::Line && parse_line(table, line_buf) == Ok(Line::Header);
            if stats.header {
                continue;
            }
            if require_header {
                return Err(ScanError::NoHeader);
            }
        }
        match next {
            Next::Line => {}
            Next::TooLong => {
                stats.skipped += 1;
                skip_line(&mut input, limits, &mut taken)?;
                continue;
            }
            // The kernel ends every line; this one was cut short.
            Next::Cut | Next::End => {
                stats.skipped += 1;
                return Ok(stats);
            }
        }
        match parse_line(table, line_buf) {
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

/// Opens `path` for reading if it is a regular file (procfs files are), and
/// refuses anything else. The open itself cannot block: with O_NONBLOCK a
/// FIFO without a writer opens at once, and is then refused by its type.
/// The flag stays set, and changes nothing for the regular files read.
fn open_regular(path: &Path) -> Result<File, Error> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|source| Error::Open {
            path: path.to_owned(),
            source,
        })?;
    let kind = file
        .metadata()
        .map_err(|source| Error::Open {
            path: path.to_owned(),
            source,
        })?
        .file_type();
    let what = if kind.is_file() {
        return Ok(file);
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    };
    Err(Error::NotAFile {
        path: path.to_owned(),
        kind: what,
    })
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
    ///
    /// Errors: the file cannot be opened, or is not a regular file; reading
    /// fails; it goes on past [`MAX_TABLE_BYTES`]; it does not start with the
    /// kernel's header, or none of its lines after the header can be read.
    /// An empty file is an empty table.
    pub fn read(&mut self, table: Table, out: &mut Vec<Listener>) -> Result<PollStats, Error> {
        let path = || self.root.join("net").join(table.file_name());
        let slot = &mut self.files[table.index()];
        let reader = match slot {
            Some(reader) => {
                // Re-reading from the start makes the kernel print afresh.
                reader
                    .seek(SeekFrom::Start(0))
                    .map_err(|source| Error::Read {
                        path: path(),
                        source,
                    })?;
                reader
            }
            None => {
                let file = open_regular(&path())?;
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
        let result = scan_within(
            table,
            &mut *reader,
            &mut self.line,
            out,
            Limits::DEFAULT,
            true,
        );
        let bytes = reader.get_ref().bytes;
        let error = match result {
            Ok(stats) => {
                let rows = stats.lines.saturating_sub(1);
                if rows == 0 || stats.skipped < rows {
                    return Ok(PollStats { bytes, ..stats });
                }
                Error::Malformed {
                    path: path(),
                    reason: format!("none of its {rows} line(s) after the header can be read"),
                }
            }
            Err(ScanError::Io(source)) => Error::Read {
                path: path(),
                source,
            },
            Err(ScanError::TooLarge) => Error::TooLarge {
                path: path(),
                limit: MAX_TABLE_BYTES,
            },
            Err(ScanError::NoHeader) => Error::Malformed {
                path: path(),
                reason: "it does not start with the kernel's header line".into(),
            },
        };
        // A fresh open next time, rather than a reader in an unknown state.
        *slot = None;
        Err(error)
    }
}

/// `net.ipv6.bindv6only`: whether `::` listeners are IPv6-only unless they
/// say otherwise (/proc has no per-socket flag). Read from
/// `<root>/sys/net/ipv6/bindv6only` when the root has it (`/proc`), else
/// from `/proc/sys/net/ipv6/bindv6only`: sysctl files belong to the reader's
/// network namespace, and `/proc/<pid>` has no `sys`.
///
/// The file holds `0` or `1` and a newline: at most a few bytes are read,
/// from a regular file only, and anything else is an error.
pub fn bindv6only(root: &Path) -> Result<bool, Error> {
    let own = root.join("sys/net/ipv6/bindv6only");
    let path = if own.exists() {
        own
    } else {
        PathBuf::from("/proc/sys/net/ipv6/bindv6only")
    };
    let file = open_regular(&path)?;
    let mut text = Vec::with_capacity(SYSCTL_BYTES);
    file.take(SYSCTL_BYTES as u64)
        .read_to_end(&mut text)
        .map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?;
    match text.as_slice() {
        b"0\n" | b"0" => Ok(false),
        b"1\n" | b"1" => Ok(true),
        _ => Err(Error::Malformed {
            path,
            reason: "expected 0 or 1".into(),
        }),
    }
}

/// How much of a 0-or-1 sysctl file is read: enough to see that it holds
/// more than that.
const SYSCTL_BYTES: usize = 8;

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

    const HEADER: &[u8] = b"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";

    fn scan_bytes(
        table: Table,
        bytes: &[u8],
        limits: Limits,
        require_header: bool,
    ) -> (Result<PollStats, ScanError>, Vec<Listener>, Vec<u8>) {
        let (mut buf, mut out) = (Vec::new(), Vec::new());
        let result = scan_within(
            table,
            io::Cursor::new(bytes),
            &mut buf,
            &mut out,
            limits,
            require_header,
        );
        (result, out, buf)
    }

    #[test]
    fn a_long_line_is_skipped_and_never_buffered_whole() {
        let mut input = HEADER.to_vec();
        input.extend(std::iter::repeat_n(b'x', 100_000));
        input.push(b'\n');
        input.extend_from_slice(LISTEN_LINE);
        input.push(b'\n');
        let (result, out, buf) = scan_bytes(Table::Tcp, &input, Limits::DEFAULT, true);
        let stats = result.unwrap();
        assert_eq!((stats.lines, stats.skipped, out.len()), (3, 1, 1));
        assert!(
            buf.capacity() <= 2 * (MAX_LINE + 1),
            "the line buffer grew to {}",
            buf.capacity()
        );
    }

    #[test]
    fn a_line_of_exactly_max_line_bytes_is_read() {
        let mut at_bound = LISTEN_LINE.to_vec();
        at_bound.resize(MAX_LINE, b' ');
        for (line, found) in [
            (at_bound.clone(), 1),
            ([at_bound, b" ".to_vec()].concat(), 0),
        ] {
            let input = [HEADER, &line, b"\n"].concat();
            let (result, out, _) = scan_bytes(Table::Tcp, &input, Limits::DEFAULT, true);
            let stats = result.unwrap();
            assert_eq!(out.len(), found, "a line of {} bytes", line.len());
            assert_eq!(stats.skipped, 1 - found);
        }
    }

    #[test]
    fn a_table_stops_at_its_byte_bound() {
        let limits = Limits {
            line: 200,
            table: 1000,
        };
        let line = [LISTEN_LINE, b"\n"].concat();
        let mut input = HEADER.to_vec();
        while input.len() + line.len() <= 1000 {
            input.extend_from_slice(&line);
        }
        let (result, out, _) = scan_bytes(Table::Tcp, &input, limits, true);
        assert!(result.is_ok(), "up to the bound is fine: {result:?}");
        let fits = out.len();
        input.extend_from_slice(&line);
        let (result, _, _) = scan_bytes(Table::Tcp, &input, limits, true);
        assert!(matches!(result, Err(ScanError::TooLarge)), "{result:?}");
        assert!(fits > 0);
        // One endless line counts too, while it is being skipped.
        let endless = [HEADER, &[b'0'; 2000][..]].concat();
        let (result, _, _) = scan_bytes(Table::Udp, &endless, limits, true);
        assert!(matches!(result, Err(ScanError::TooLarge)), "{result:?}");
        // And endless short lines.
        let empty_lines = io::BufReader::new(io::repeat(b'\n'));
        let result = scan_within(
            Table::Udp,
            empty_lines,
            &mut Vec::new(),
            &mut Vec::new(),
            limits,
            false,
        );
        assert!(matches!(result, Err(ScanError::TooLarge)), "{result:?}");
    }

    #[test]
    fn an_endless_input_ends_at_the_default_bound() {
        let mut out = Vec::new();
        let endless = io::BufReader::new(io::repeat(b'0'));
        let error = scan(Table::Udp, endless, &mut Vec::new(), &mut out).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::FileTooLarge, "{error}");
        assert!(out.is_empty());
    }

    #[test]
    fn a_table_must_start_with_the_header_when_required() {
        let garbage = [&[0u8; 10_000][..], b"\n", LISTEN_LINE, b"\n"].concat();
        let (result, out, _) = scan_bytes(Table::Tcp, &garbage, Limits::DEFAULT, true);
        assert!(matches!(result, Err(ScanError::NoHeader)), "{result:?}");
        assert!(out.is_empty());
        let (result, out, _) = scan_bytes(Table::Tcp, &garbage, Limits::DEFAULT, false);
        let stats = result.unwrap();
        assert!(!stats.header);
        assert_eq!(
            (stats.skipped, out.len()),
            (1, 1),
            "scan alone only notes it"
        );
        let (result, _, _) = scan_bytes(Table::Tcp, b"", Limits::DEFAULT, true);
        assert_eq!(result.unwrap().lines, 0, "an empty file is an empty table");
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
