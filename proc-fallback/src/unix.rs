//! `/proc/net/unix`: unix-domain sockets, as the last resort.
//!
//! Each line is `Num: RefCount Protocol Flags Type St Inode [Path]`. A
//! listener is a stream or seqpacket socket with `__SO_ACCEPTCON` in Flags
//! (`00010000`) and St `01` (unconnected), or a bound dgram socket in St
//! `01`.
//!
//! **The file cannot be trusted.** The kernel prints a socket's name raw:
//! spaces as they are, a leading NUL (an abstract name) and inner NULs as
//! `@`, and a newline as a newline. Anyone can bind an abstract name holding
//! a newline followed by a whole fake line, naming any path. So every row is
//! reported together with how often its inode appears in the file (a fake
//! row that copies a real socket's inode shows it twice), and the caller
//! must verify a row before letting it decide anything. Names that hold a
//! NUL also come out differently than through netlink.

use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::{Error, Limits, Next, ScanError, next_line, open_regular, skip_line};

/// The kind of a unix socket, as its `Type` column says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnixKind {
    /// `SOCK_STREAM` (1).
    Stream,
    /// `SOCK_DGRAM` (2).
    Dgram,
    /// `SOCK_SEQPACKET` (5).
    Seqpacket,
}

/// A listening unix socket, as one row says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixListener {
    /// Stream, dgram or seqpacket.
    pub kind: UnixKind,
    /// The socket inode.
    pub inode: u64,
    /// The name as printed: a path, or `@` and an abstract name.
    pub name: Vec<u8>,
    /// How many rows of the file (listening or not) carry this inode: more
    /// than one means some row is forged.
    pub rows_with_inode: usize,
}

/// What one line is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum UnixLine {
    Header,
    /// Any socket: its inode, and whether and how it listens.
    Socket(u64, Option<(UnixKind, Vec<u8>)>),
}

const ACCEPTCON: u32 = 0x0001_0000;
const SS_UNCONNECTED: u8 = 1;

/// Reads one line; `None` when it is not shaped like the kernel's.
fn parse_unix_line(line: &[u8]) -> Option<UnixLine> {
    if line.starts_with(b"Num ") {
        return Some(UnixLine::Header);
    }
    // Seven space-separated columns, then the name after one space.
    let mut rest = line;
    let num = column(&mut rest)?;
    if num.last() != Some(&b':') {
        return None;
    }
    let _refcount = column(&mut rest)?;
    let _protocol = column(&mut rest)?;
    let flags = hex(column(&mut rest)?)?;
    let kind = hex(column(&mut rest)?)?;
    let state = hex(column(&mut rest)?)?;
    let inode: u64 = std::str::from_utf8(column(&mut rest)?).ok()?.parse().ok()?;
    let name = rest.strip_prefix(b" ").unwrap_or(rest);
    let kind = match kind {
        1 => UnixKind::Stream,
        2 => UnixKind::Dgram,
        5 => UnixKind::Seqpacket,
        _ => return Some(UnixLine::Socket(inode, None)),
    };
    let listening = match kind {
        UnixKind::Stream | UnixKind::Seqpacket => flags & ACCEPTCON != 0,
        UnixKind::Dgram => true,
    } && state == u32::from(SS_UNCONNECTED)
        && !name.is_empty();
    Some(UnixLine::Socket(
        inode,
        listening.then(|| (kind, name.to_vec())),
    ))
}

/// The next space-separated word of `rest`, which moves past it.
fn column<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let start = rest.iter().position(|&b| b != b' ')?;
    let word = &rest[start..];
    let end = word.iter().position(|&b| b == b' ').unwrap_or(word.len());
    *rest = &word[end..];
    Some(&word[..end])
}

fn hex(word: &[u8]) -> Option<u32> {
    u32::from_str_radix(std::str::from_utf8(word).ok()?, 16).ok()
}

/// Reads `<root>/net/unix`, keeping the file open between reads.
pub struct UnixReader {
    path: PathBuf,
    file: Option<BufReader<File>>,
    line: Vec<u8>,
}

impl UnixReader {
    /// A reader of `<root>/net/unix`.
    pub fn new(root: &Path) -> UnixReader {
        UnixReader {
            path: root.join("net/unix"),
            file: None,
            line: Vec::with_capacity(256),
        }
    }

    /// The listeners of the file, appended to `out`; returns how many lines
    /// were malformed and skipped. The same bounds as the other tables: a
    /// regular file only, lines of at most [`crate::MAX_LINE`] bytes, at
    /// most [`crate::MAX_TABLE_BYTES`] in all, and the header first.
    pub fn read(&mut self, out: &mut Vec<UnixListener>) -> Result<usize, Error> {
        let result = self.scan(out);
        if result.is_err() {
            self.file = None;
        }
        result
    }

    fn scan(&mut self, out: &mut Vec<UnixListener>) -> Result<usize, Error> {
        let path = self.path.clone();
        let read_error = |source| Error::Read {
            path: path.clone(),
            source,
        };
        let reader = match &mut self.file {
            Some(reader) => {
                reader.seek(SeekFrom::Start(0)).map_err(read_error)?;
                reader
            }
            None => {
                let file = open_regular(&self.path)?;
                self.file.insert(BufReader::with_capacity(4096, file))
            }
        };
        let limits = Limits::DEFAULT;
        let mut taken = 0;
        let mut skipped = 0;
        let mut first = true;
        let mut inodes: std::collections::HashMap<u64, usize> = Default::default();
        let start = out.len();
        loop {
            let next = next_line(reader, &mut self.line, limits, &mut taken);
            let next = match next {
                Ok(next) => next,
                Err(ScanError::Io(source)) => return Err(read_error(source)),
                Err(_) => {
                    return Err(Error::TooLarge {
                        path,
                        limit: limits.table,
                    });
                }
            };
            match next {
                Next::End => break,
                Next::TooLong => {
                    skipped += 1;
                    if let Err(e) = skip_line(reader, limits, &mut taken) {
                        return Err(match e {
                            ScanError::Io(source) => read_error(source),
                            _ => Error::TooLarge {
                                path,
                                limit: limits.table,
                            },
                        });
                    }
                    continue;
                }
                Next::Cut | Next::Line => {}
            }
            let parsed = parse_unix_line(&self.line);
            if first {
                first = false;
                if parsed != Some(UnixLine::Header) {
                    return Err(Error::Malformed {
                        path,
                        reason: "it does not start with the kernel's header line".into(),
                    });
                }
                continue;
            }
            match parsed {
                Some(UnixLine::Socket(inode, listening)) => {
                    *inodes.entry(inode).or_default() += 1;
                    if let Some((kind, name)) = listening {
                        out.push(UnixListener {
                            kind,
                            inode,
                            name,
                            rows_with_inode: 0,
                        });
                    }
                }
                Some(UnixLine::Header) | None => skipped += 1,
            }
        }
        for listener in &mut out[start..] {
            listener.rows_with_inode = inodes.get(&listener.inode).copied().unwrap_or(0);
        }
        Ok(skipped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_and_others() {
        let header = b"Num       RefCount Protocol Flags    Type St Inode Path";
        assert_eq!(parse_unix_line(header), Some(UnixLine::Header));
        let stream = b"0000000000000000: 00000002 00000000 00010000 0001 01 23456 /run/a b.sock";
        assert_eq!(
            parse_unix_line(stream),
            Some(UnixLine::Socket(
                23456,
                Some((UnixKind::Stream, b"/run/a b.sock".to_vec()))
            ))
        );
        let bound_only = b"0000000000000000: 00000002 00000000 00000000 0001 01 23457 /run/b";
        assert_eq!(
            parse_unix_line(bound_only),
            Some(UnixLine::Socket(23457, None))
        );
        let dgram = b"0000000000000000: 00000002 00000000 00000000 0002 01 23458 @app";
        assert_eq!(
            parse_unix_line(dgram),
            Some(UnixLine::Socket(
                23458,
                Some((UnixKind::Dgram, b"@app".to_vec()))
            ))
        );
        let unbound = b"0000000000000000: 00000002 00000000 00000000 0002 01 23459";
        assert_eq!(
            parse_unix_line(unbound),
            Some(UnixLine::Socket(23459, None))
        );
        let connected = b"0000000000000000: 00000003 00000000 00000000 0001 03 1664";
        assert_eq!(
            parse_unix_line(connected),
            Some(UnixLine::Socket(1664, None))
        );
        assert_eq!(parse_unix_line(b"garbage"), None);
    }

    #[test]
    fn a_forged_row_shares_its_inode_or_names_one_nobody_holds() {
        let dir = std::env::temp_dir().join(format!("unix-forged-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("net")).unwrap();
        // A real abstract listener whose name holds a newline and a fake
        // row copying its own inode.
        let text = "Num       RefCount Protocol Flags    Type St Inode Path\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 500 @x\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 500 /run/cups/cups.sock\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 501 /run/real.sock\n";
        std::fs::write(dir.join("net/unix"), text).unwrap();
        let mut out = Vec::new();
        let skipped = UnixReader::new(&dir).read(&mut out).unwrap();
        assert_eq!(skipped, 0);
        let counts: Vec<(&[u8], usize)> = out
            .iter()
            .map(|l| (l.name.as_slice(), l.rows_with_inode))
            .collect();
        assert_eq!(
            counts,
            [
                (&b"@x"[..], 2),
                (&b"/run/cups/cups.sock"[..], 2),
                (&b"/run/real.sock"[..], 1)
            ]
        );
        std::fs::write(dir.join("net/unix"), "not a table\n").unwrap();
        assert!(UnixReader::new(&dir).read(&mut out).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
