//! Any bytes, as a line of each table and as a whole file: the parser may
//! reject them but must never panic, and `scan` must account for every line.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use proc_fallback::{Table, parse_line, scan};

fuzz_target!(|data: &[u8]| {
    for table in Table::ALL {
        let _ = parse_line(table, data);
        let mut out = Vec::new();
        let stats = scan(table, Cursor::new(data), &mut Vec::new(), &mut out).unwrap();
        assert!(out.len() + stats.skipped <= stats.lines);
    }
});
