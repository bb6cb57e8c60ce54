//! The fixture trees of `tests/fixtures/` (described in its README), and
//! round trips through a formatter that prints lines as the kernel does.

use std::io::Cursor;
use std::net::IpAddr;
use std::path::PathBuf;

use proc_fallback::{Error, Line, Listener, PollStats, Reader, Table, parse_line, scan};

fn root(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn read(name: &str, table: Table) -> (Vec<(String, u16, u32, u64)>, PollStats) {
    let mut reader = Reader::new(root(name));
    let mut out = Vec::new();
    let stats = reader.read(table, &mut out).unwrap();
    let listeners = out
        .iter()
        .map(|l| (l.addr.to_string(), l.port, l.uid, l.inode))
        .collect();
    (listeners, stats)
}

fn owned(rows: &[(&str, u16, u32, u64)]) -> Vec<(String, u16, u32, u64)> {
    rows.iter()
        .map(|&(a, p, u, i)| (a.to_string(), p, u, i))
        .collect()
}

#[test]
#[cfg(target_endian = "little")]
fn tcp_stops_at_the_end_of_the_listening_section() {
    let (listeners, stats) = read("listeners", Table::Tcp);
    assert_eq!(
        listeners,
        owned(&[("0.0.0.0", 80, 0, 1001), ("127.0.0.1", 8080, 1000, 1002)])
    );
    assert!(stats.stopped_early);
    assert_eq!(
        stats.skipped, 0,
        "the garbage after the section is never read"
    );
    assert_eq!(
        stats.lines, 4,
        "header, two listeners, the ESTABLISHED line"
    );
    let whole = std::fs::metadata(root("listeners").join("net/tcp"))
        .unwrap()
        .len();
    assert_eq!(stats.bytes, whole, "a small file comes in one chunk");
}

#[test]
#[cfg(target_endian = "little")]
fn tcp6_addresses_are_four_host_order_words() {
    let (listeners, stats) = read("listeners", Table::Tcp6);
    assert_eq!(
        listeners,
        owned(&[
            ("::", 3000, 0, 2001),
            ("::1", 8443, 0, 2002),
            ("fe80::200:ff:fffe:1", 22, 0, 2003),
            ("::ffff:127.0.0.1", 8081, 0, 2004),
        ])
    );
    assert!(!stats.stopped_early);
}

#[test]
#[cfg(target_endian = "little")]
fn udp_counts_bound_and_skips_connected() {
    let (listeners, stats) = read("udp", Table::Udp);
    assert_eq!(
        listeners,
        owned(&[("127.0.0.1", 53, 0, 3001), ("0.0.0.0", 5353, 101, 3003)])
    );
    assert!(!stats.stopped_early, "udp is read to the end");
    assert_eq!(
        read("udp", Table::Udp6).0,
        owned(&[("::", 5353, 101, 3004)])
    );
}

#[test]
#[cfg(target_endian = "little")]
fn syn_recv_among_listeners_does_not_stop_the_read() {
    let (listeners, stats) = read("syn-recv", Table::Tcp);
    assert_eq!(
        listeners,
        owned(&[("0.0.0.0", 80, 0, 1001), ("0.0.0.0", 443, 0, 1004)])
    );
    assert!(stats.stopped_early, "the ESTABLISHED line ends it");
}

#[test]
#[cfg(target_endian = "little")]
fn garbage_and_truncated_lines_are_skipped_and_counted() {
    let (listeners, stats) = read("garbage", Table::Tcp);
    assert_eq!(
        listeners,
        owned(&[("0.0.0.0", 80, 0, 1001), ("127.0.0.1", 81, 0, 1004)])
    );
    assert_eq!(stats.skipped, 6);
}

#[test]
fn empty_files_have_no_listeners() {
    let (listeners, stats) = read("empty", Table::Tcp);
    assert!(listeners.is_empty());
    assert_eq!((stats.lines, stats.bytes, stats.skipped), (0, 0, 0));
    let (listeners, stats) = read("empty", Table::Udp);
    assert!(listeners.is_empty());
    assert_eq!((stats.lines, stats.skipped), (1, 0));
}

#[test]
fn a_missing_file_is_an_error_naming_the_path() {
    let mut reader = Reader::new(root("missing"));
    let error = reader.read(Table::Tcp6, &mut Vec::new()).unwrap_err();
    assert!(matches!(error, Error::Open { .. }));
    let message = error.to_string();
    assert!(message.contains("fixtures/missing/net/tcp6"), "{message}");
    assert!(message.contains("No such file"), "{message}");
}

#[test]
#[cfg(target_endian = "little")]
fn a_reader_rereads_the_same_file() {
    let mut reader = Reader::new(root("listeners"));
    for _ in 0..3 {
        let mut out = Vec::new();
        reader.read(Table::Tcp, &mut out).unwrap();
        assert_eq!(out.len(), 2);
    }
}

/// Prints a listener as the kernel's tcp4_seq_show / udp4_format_sock do
/// (`%08X` of each 32-bit word as stored, `%04X` of the port).
fn kernel_line(slot: usize, listener: &Listener, state: u8) -> String {
    let words: Vec<String> = match listener.addr {
        IpAddr::V4(a) => vec![format!("{:08X}", u32::from_ne_bytes(a.octets()))],
        IpAddr::V6(a) => a
            .octets()
            .chunks(4)
            .map(|c| format!("{:08X}", u32::from_ne_bytes(c.try_into().unwrap())))
            .collect(),
    };
    let zeros = "0".repeat(words.len() * 8);
    format!(
        "{slot:4}: {}:{:04X} {zeros}:0000 {state:02X} 00000000:00000000 00:00000000 00000000 {:5} {:8} {} 1 0000000000000000 100 0 0 10 0\n",
        words.concat(),
        listener.port,
        listener.uid,
        0,
        listener.inode,
    )
}

#[test]
fn round_trip_through_the_kernel_format() {
    let addresses = [
        "0.0.0.0",
        "127.0.0.1",
        "10.1.2.3",
        "255.255.255.255",
        "::",
        "::1",
        "fe80::1",
        "2001:db8::8:800:200c:417a",
        "::ffff:192.0.2.1",
    ];
    for (i, text) in addresses.iter().enumerate() {
        for port in [0, 1, 80, 8080, 65535] {
            let addr: IpAddr = text.parse().unwrap();
            let listener = Listener {
                addr,
                port,
                uid: 4_000_000_000,
                inode: u64::from(u32::MAX) + i as u64,
            };
            let (table, state) = match (addr.is_ipv6(), port % 2 == 0) {
                (false, true) => (Table::Tcp, 0x0A),
                (false, false) => (Table::Udp, 0x07),
                (true, true) => (Table::Tcp6, 0x0A),
                (true, false) => (Table::Udp6, 0x07),
            };
            let line = kernel_line(i, &listener, state);
            assert_eq!(
                parse_line(table, line.trim_end().as_bytes()),
                Ok(Line::Listener(listener)),
                "{line}"
            );
            let mut out = Vec::new();
            scan(
                table,
                Cursor::new(line.as_bytes()),
                &mut Vec::new(),
                &mut out,
            )
            .unwrap();
            assert_eq!(out, [listener]);
        }
    }
}

/// What the fuzz target does, on stable: mutations of the fixture files
/// (changed bytes, cut ends) are skipped or read, never a panic, and every
/// line is accounted for.
#[test]
fn mutated_files_never_panic() {
    let seeds: Vec<(Table, Vec<u8>)> = [
        ("listeners", Table::Tcp),
        ("listeners", Table::Tcp6),
        ("udp", Table::Udp),
        ("syn-recv", Table::Tcp),
        ("garbage", Table::Tcp),
    ]
    .iter()
    .map(|&(root_name, table)| {
        let path = root(root_name).join("net").join(table.file_name());
        (table, std::fs::read(path).unwrap())
    })
    .collect();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..20_000 {
        let (table, seed) = &seeds[round % seeds.len()];
        let mut bytes = seed.clone();
        for _ in 0..1 + next() % 6 {
            let at = (next() as usize) % bytes.len();
            bytes[at] = next() as u8;
        }
        let cut = (next() as usize) % (bytes.len() + 1);
        for table in [*table, Table::Udp6] {
            let mut out = Vec::new();
            let stats = scan(table, Cursor::new(&bytes[..cut]), &mut Vec::new(), &mut out).unwrap();
            assert!(out.len() + stats.skipped <= stats.lines);
        }
    }
}
