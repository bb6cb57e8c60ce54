//! Any bytes as a sock_diag datagram: a dump reply for each kind of request,
//! and destroy events. Malformed messages must be skipped or refused, never
//! a panic. Seed it with src/source/testdata/*.bin.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sockwatch::source::netlink::fuzzing::walk_datagram(data);
});
