//! The records of a perf ring, parsed: what a tracepoint hit says.
//!
//! The ring holds `perf_event_header`s followed by their bodies; sockwatch
//! asks only for `PERF_SAMPLE_RAW`, so a sample's body is a `u32` length and
//! the tracepoint's raw entry, whose fields sit at the offsets its tracefs
//! `format` file gives (read once, see [`super::tracefs`]). Which
//! tracepoint a raw entry comes from is its `common_type`: every event of a
//! CPU writes into one ring (`PERF_EVENT_IOC_SET_OUTPUT`).
//!
//! Bytes come from the kernel but are still checked: a length that runs
//! past the bytes taken ends the walk instead of reading past them.

use super::tracefs::Format;

/// `PERF_RECORD_LOST`: samples were dropped (a full or paused ring).
const PERF_RECORD_LOST: u32 = 2;
/// `PERF_RECORD_SAMPLE`.
const PERF_RECORD_SAMPLE: u32 = 9;
/// `TCP_LISTEN` in the kernel's state numbering.
pub const TCP_LISTEN: u64 = 10;
/// `TCP_CLOSE`.
pub const TCP_CLOSE: u64 = 7;

/// What one record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    /// A socket entered LISTEN: `family` (`AF_INET`, `AF_INET6`) and the
    /// port as the tracepoint saw it (0 or stale when it fired before the
    /// socket was hashed), from thread `pid`.
    Listen {
        /// `AF_INET` or `AF_INET6`.
        family: u16,
        /// The local port, host order.
        port: u16,
        /// The thread that called listen().
        pid: u32,
    },
    /// A listener went from LISTEN to CLOSE (closed, or shut down).
    Unlisten,
    /// A thread entered bind() with an inet-sized address.
    BindEnter {
        /// The thread.
        pid: u32,
    },
    /// A thread's bind() returned 0.
    BindExit {
        /// The thread.
        pid: u32,
    },
    /// The kernel dropped this many samples.
    Lost(u64),
}

/// Where the fields sockwatch reads sit in each tracepoint's raw entry.
#[derive(Debug, Clone)]
pub struct Layout {
    /// `sock:inet_sock_set_state`.
    pub set_state: Format,
    /// `syscalls:sys_enter_bind`, when UDP is watched.
    pub enter_bind: Option<Format>,
    /// `syscalls:sys_exit_bind`, when UDP is watched.
    pub exit_bind: Option<Format>,
}

/// Appends the records in `bytes` (whole records, as taken from a ring) to
/// `out`; records of other types and tracepoints are skipped. Returns how
/// many bytes were not a whole record (0 for well-formed input).
pub fn parse(bytes: &[u8], layout: &Layout, out: &mut Vec<Record>) -> usize {
    let mut at = 0;
    while bytes.len() - at >= 8 {
        let kind = u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap());
        let size = usize::from(u16::from_ne_bytes(
            bytes[at + 6..at + 8].try_into().unwrap(),
        ));
        if size < 8 || at + size > bytes.len() {
            return bytes.len() - at;
        }
        let body = &bytes[at + 8..at + size];
        match kind {
            PERF_RECORD_SAMPLE => {
                if let Some(record) = sample(body, layout) {
                    out.push(record);
                }
            }
            // id (u64), then the count.
            PERF_RECORD_LOST if body.len() >= 16 => {
                out.push(Record::Lost(u64::from_ne_bytes(
                    body[8..16].try_into().unwrap(),
                )));
            }
            _ => {}
        }
        at += size;
    }
    bytes.len() - at
}

fn sample(body: &[u8], layout: &Layout) -> Option<Record> {
    let raw_size = u32::from_ne_bytes(body.get(..4)?.try_into().ok()?) as usize;
    let raw = body.get(4..4 + raw_size)?;
    let common = &layout.set_state;
    let kind = common.get(raw, "common_type")?;
    let pid = common.get(raw, "common_pid")? as u32;
    if kind == layout.set_state.id {
        let f = &layout.set_state;
        let (old, new) = (f.get(raw, "oldstate")?, f.get(raw, "newstate")?);
        if new == TCP_LISTEN {
            return Some(Record::Listen {
                family: f.get(raw, "family")? as u16,
                port: f.get(raw, "sport")? as u16,
                pid,
            });
        }
        return (old == TCP_LISTEN && new == TCP_CLOSE).then_some(Record::Unlisten);
    }
    if layout.enter_bind.as_ref().is_some_and(|f| f.id == kind) {
        return Some(Record::BindEnter { pid });
    }
    if layout.exit_bind.as_ref().is_some_and(|f| f.id == kind) {
        return Some(Record::BindExit { pid });
    }
    None
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A set_state format as Linux 6.x prints it (offsets from this
    /// machine's kernel, 6.18), and the bind pair.
    pub const SET_STATE_FORMAT: &str = "name: inet_sock_set_state
ID: 1581
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:int oldstate;\toffset:16;\tsize:4;\tsigned:1;
\tfield:int newstate;\toffset:20;\tsize:4;\tsigned:1;
\tfield:__u16 sport;\toffset:24;\tsize:2;\tsigned:0;
\tfield:__u16 dport;\toffset:26;\tsize:2;\tsigned:0;
\tfield:__u16 family;\toffset:28;\tsize:2;\tsigned:0;
\tfield:__u16 protocol;\toffset:30;\tsize:2;\tsigned:0;
\tfield:__u8 saddr[4];\toffset:32;\tsize:4;\tsigned:0;
\tfield:__u8 daddr[4];\toffset:36;\tsize:4;\tsigned:0;
\tfield:__u8 saddr_v6[16];\toffset:40;\tsize:16;\tsigned:0;
\tfield:__u8 daddr_v6[16];\toffset:56;\tsize:16;\tsigned:0;

print fmt: \"family=%s\"
";

    pub fn layout() -> Layout {
        let format = |id: u64| Format::parse(id, SET_STATE_FORMAT).unwrap();
        Layout {
            set_state: format(1581),
            enter_bind: Some(format(700)),
            exit_bind: Some(format(699)),
        }
    }

    /// A sample record of tracepoint `id` with the set_state fields given.
    pub fn sample(id: u16, pid: u32, states: (u32, u32), family: u16, port: u16) -> Vec<u8> {
        let mut raw = vec![0u8; 72];
        raw[0..2].copy_from_slice(&id.to_ne_bytes());
        raw[4..8].copy_from_slice(&pid.to_ne_bytes());
        raw[16..20].copy_from_slice(&states.0.to_ne_bytes());
        raw[20..24].copy_from_slice(&states.1.to_ne_bytes());
        raw[24..26].copy_from_slice(&port.to_ne_bytes());
        raw[28..30].copy_from_slice(&family.to_ne_bytes());
        // Header, the raw size, the raw entry, padded to 8 bytes.
        let body = 4 + raw.len();
        let size = (8 + body).div_ceil(8) * 8;
        let mut record = Vec::with_capacity(size);
        record.extend_from_slice(&PERF_RECORD_SAMPLE.to_ne_bytes());
        record.extend_from_slice(&0u16.to_ne_bytes());
        record.extend_from_slice(&(size as u16).to_ne_bytes());
        record.extend_from_slice(&(raw.len() as u32).to_ne_bytes());
        record.extend_from_slice(&raw);
        record.resize(size, 0);
        record
    }

    pub fn lost(count: u64) -> Vec<u8> {
        let mut record = Vec::new();
        record.extend_from_slice(&PERF_RECORD_LOST.to_ne_bytes());
        record.extend_from_slice(&0u16.to_ne_bytes());
        record.extend_from_slice(&24u16.to_ne_bytes());
        record.extend_from_slice(&7u64.to_ne_bytes());
        record.extend_from_slice(&count.to_ne_bytes());
        record
    }

    #[test]
    fn reads_each_kind_of_record() {
        let mut bytes = sample(1581, 42, (7, 10), 10, 8080);
        bytes.extend(sample(1581, 42, (10, 7), 2, 8080));
        bytes.extend(sample(1581, 42, (10, 3), 2, 8080)); // LISTEN -> SYN_RECV
        bytes.extend(sample(700, 43, (0, 0), 0, 0));
        bytes.extend(sample(699, 43, (0, 0), 0, 0));
        bytes.extend(sample(5, 1, (0, 0), 0, 0)); // another tracepoint
        bytes.extend(lost(12));
        let mut out = Vec::new();
        assert_eq!(parse(&bytes, &layout(), &mut out), 0);
        assert_eq!(
            out,
            [
                Record::Listen {
                    family: 10,
                    port: 8080,
                    pid: 42
                },
                Record::Unlisten,
                Record::BindEnter { pid: 43 },
                Record::BindExit { pid: 43 },
                Record::Lost(12),
            ]
        );
    }

    #[test]
    fn a_truncated_record_ends_the_walk() {
        let mut bytes = sample(1581, 42, (7, 10), 2, 80);
        let whole = bytes.len();
        bytes.extend_from_slice(&sample(1581, 42, (7, 10), 2, 81)[..20]);
        let mut out = Vec::new();
        assert_eq!(parse(&bytes, &layout(), &mut out), 20);
        assert_eq!(out.len(), 1);
        // A size field that claims more than the bytes, or less than a header.
        let mut bad = sample(1581, 42, (7, 10), 2, 80);
        bad[6..8].copy_from_slice(&4u16.to_ne_bytes());
        out.clear();
        assert_eq!(parse(&bad, &layout(), &mut out), whole);
        assert!(out.is_empty());
    }

    #[test]
    fn a_raw_size_beyond_the_record_is_skipped() {
        let mut bytes = sample(1581, 42, (7, 10), 2, 80);
        bytes[8..12].copy_from_slice(&1000u32.to_ne_bytes());
        let mut out = Vec::new();
        assert_eq!(parse(&bytes, &layout(), &mut out), 0);
        assert!(out.is_empty());
    }
}
