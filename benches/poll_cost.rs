//! Poll cost: one snapshot of the listening TCP sockets, per source, with L
//! listeners and B background TIME_WAIT sockets, side by side with what
//! naive tools do (a full read and parse of /proc/net/tcp* with the procfs
//! crate) and with `ss` as a whole process.
//!
//! Run: `cargo bench --bench poll_cost` (as root: it makes network
//! namespaces), then `python3 benches/report.py` for the table of ratios.

#[path = "support/lab.rs"]
mod lab;

use std::hint::black_box;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use sockwatch::endpoint::{Family, Table, Transport};
use sockwatch::source::Source;
use sockwatch::source::netlink::Netlink;
use sockwatch::source::proc::Proc;
use sockwatch::watcher::{Options, SourceChoice, Watcher};

const TCP_TABLES: [Table; 2] = [
    Table::new(Transport::Tcp, Family::Inet),
    Table::new(Transport::Tcp, Family::Inet6),
];

fn watcher(source: SourceChoice) -> Watcher {
    Watcher::open(&Options {
        source,
        tables: Table::ALL.to_vec(),
        pushed: false,
        processes: false,
        proc_root: "/proc".into(),
        announce: false,
        verbose: false,
        detect: sockwatch::detect::Detect::Poll,
        refresh_owners: false,
        v6only_matters: false,
        netns: Vec::new(),
        all_netns: false,
    })
    .unwrap()
}

fn run_quietly(command: &mut Command) {
    let status = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

fn poll_cost(c: &mut Criterion) {
    let has_ss = Command::new("ss").arg("-V").output().is_ok();
    for (listeners, background) in [
        (10, 0),
        (10, 10_000),
        (10, 50_000),
        (1000, 0),
        (1000, 10_000),
        (1000, 50_000),
    ] {
        // A fresh namespace per group: TIME_WAIT sockets live 60 s.
        let lab = lab::Lab::new(listeners, background);
        let name = format!("poll/L{listeners}/B{background}");
        eprintln!(
            "{name}: /proc/net/tcp is {} bytes",
            lab::proc_net_tcp_size()
        );
        let mut group = c.benchmark_group(&name);
        group
            .sample_size(20)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(2));

        let mut netlink = Netlink::open().unwrap();
        let mut out = Vec::new();
        let mut failed = Vec::new();
        group.bench_function("netlink", |b| {
            b.iter(|| {
                out.clear();
                netlink.read(&TCP_TABLES, &mut out, &mut failed);
                assert!(failed.is_empty());
                assert_eq!(out.len(), listeners + 1);
            })
        });
        let mut proc = Proc::new(Path::new("/proc/self"));
        group.bench_function("proc", |b| {
            b.iter(|| {
                out.clear();
                proc.read(&TCP_TABLES, &mut out, &mut failed);
                assert!(failed.is_empty());
                assert_eq!(out.len(), listeners + 1);
            })
        });
        // What --detect changes pays per tick instead of a read: the
        // namespace's socket counters.
        let mut sockstat =
            sockwatch::detect::Sockstat::open(Path::new("/proc/self"), true).unwrap();
        group.bench_function("sockstat_gate_check", |b| {
            b.iter(|| black_box(sockstat.read().unwrap()))
        });
        group.bench_function("procfs_full_parse", |b| {
            b.iter(|| {
                assert_eq!(black_box(lab::procfs_listening()), listeners + 1);
            })
        });
        for (label, source) in [
            ("watcher_poll_netlink", SourceChoice::Netlink),
            ("watcher_poll_proc", SourceChoice::Proc),
        ] {
            let mut watcher = watcher(source);
            let mut events = Vec::new();
            group.bench_function(label, |b| {
                b.iter(|| {
                    events.clear();
                    watcher.poll(&mut events).unwrap();
                })
            });
        }
        group.bench_function("sockwatch_list_process", |b| {
            b.iter(|| run_quietly(Command::new(env!("CARGO_BIN_EXE_sockwatch")).arg("list")))
        });
        if has_ss {
            group.bench_function("ss_ltnuH_process", |b| {
                b.iter(|| run_quietly(Command::new("ss").arg("-ltnuH")))
            });
        }
        group.finish();
        drop(lab);
    }
}

criterion_group!(benches, poll_cost);
criterion_main!(benches);
