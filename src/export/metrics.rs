//! The metrics of `sockwatch export`, in the Prometheus text exposition
//! format (version 0.0.4), which both a scrape and node_exporter's textfile
//! collector read.
//!
//! The text is written by the Prometheus project's own Rust client,
//! `prometheus-client`, through a [`Collector`]: an exporter's series come
//! and go with what it watches, so they are encoded afresh from a
//! [`Published`] state and a [`Tally`] of reads on every scrape, never kept
//! as live metric objects. The crate writes the HELP and TYPE lines, names
//! (`_total`, `_info`, `_seconds`) and escapes label values (backslash,
//! double quote, newline) as the format says; what is written here is which
//! series there are and their labels.

use std::borrow::Cow;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::event::{Event, EventKind};
use crate::field::Field;
use crate::source::reads::{COST_BOUNDS, Tally};

/// The `Content-Type` of the format: `text/plain; version=0.0.4; charset=utf-8`.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// A series' labels, in order: `(name, value)`.
pub type Labels = Vec<(&'static str, String)>;

/// What the watcher's loop publishes after each change: the endpoints to
/// export and the events counted so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Published {
    /// The labels of each endpoint that listens (and satisfies the
    /// condition), in listing order.
    pub endpoints: Vec<Labels>,
    /// How many `socket` events were counted.
    pub appeared: u64,
    /// How many `socket-closed` events were counted.
    pub closed: u64,
    /// How new listeners are detected (`changes`, `poll`), for
    /// `sockwatch_source_info`.
    pub detect: &'static str,
}

/// The labels of `event`'s endpoint: every field of the table that has a
/// value, by its JSON name; `pid` and `comm` only when `processes` (they
/// make a new series whenever a service restarts).
pub fn labels(event: &Event, processes: bool) -> Labels {
    event
        .fields()
        .filter(|(field, _)| processes || !matches!(field, Field::Pid | Field::Comm))
        .map(|(field, value)| (field.json_name(), value.label().into_owned()))
        .collect()
}

/// The whole exposition: `published` and `tally` as text.
pub fn render(published: &Arc<Published>, tally: Tally) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Exposition {
        published: Arc::clone(published),
        tally,
    }));
    let mut text = String::new();
    // Writing to a String does not fail, nor does any encoder below but
    // by passing on the writer's error.
    prometheus_text::encode(&mut text, &registry).expect("writing to a String");
    text
}

/// One scrape's worth of state, as prometheus-client's collector.
#[derive(Debug)]
struct Exposition {
    published: Arc<Published>,
    tally: Tally,
}

impl Collector for Exposition {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let published = &self.published;
        let tally = &self.tally;

        let mut listening = encoder.encode_descriptor(
            "sockwatch_listening",
            "An endpoint that listens now (a TCP socket in LISTEN, a bound unconnected UDP \
             socket, a unix socket in LISTEN or a bound unix dgram socket): 1 per endpoint, \
             gone when it closes.",
            None,
            MetricType::Gauge,
        )?;
        for labels in &published.endpoints {
            let labels: Vec<(&str, Cow<'_, str>)> = labels
                .iter()
                .map(|(name, value)| (*name, Cow::Borrowed(value.as_str())))
                .collect();
            listening.encode_family(&labels)?.encode_gauge(&1u32)?;
        }

        let mut events = encoder.encode_descriptor(
            "sockwatch_events",
            "Endpoints that appeared (socket, counting those listening at start) or closed \
             (socket-closed).",
            None,
            MetricType::Counter,
        )?;
        for (kind, count) in [
            (EventKind::Socket, published.appeared),
            (EventKind::SocketClosed, published.closed),
        ] {
            events
                .encode_family(&[("event", kind.as_str())])?
                .encode_counter::<NoLabelSet, _, u64>(&count, None)?;
        }

        let per_table = [
            (
                "sockwatch_reads",
                "Complete reads of each socket table, by the source that read it.",
                false,
            ),
            (
                "sockwatch_read_failures",
                "Reads of each socket table that failed (what was known of the table was kept), \
                 by source.",
                true,
            ),
        ];
        for (name, help, failed) in per_table {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for ((table, source), counts) in &tally.tables {
                let table = table.to_string();
                let count = if failed { counts.failed } else { counts.done };
                family
                    .encode_family(&[("source", *source), ("table", table.as_str())])?
                    .encode_counter::<NoLabelSet, _, u64>(&count, None)?;
            }
        }

        let mut cost = encoder.encode_descriptor(
            "sockwatch_read",
            "Time each source took to read the socket tables it serves (one read covers them \
             all).",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (source, read) in &tally.costs {
            let buckets: Vec<(f64, u64)> = COST_BOUNDS.iter().copied().zip(read.buckets).collect();
            cost.encode_family(&[("source", *source)])?
                .encode_histogram::<NoLabelSet>(read.seconds, read.count, &buckets, None)?;
        }

        let mut sources = encoder.encode_descriptor(
            "sockwatch_source",
            "The source that reads each socket table now, and how new listeners are detected.",
            None,
            MetricType::Info,
        )?;
        for (table, source) in &tally.routes {
            let table = table.to_string();
            sources.encode_info(&[
                ("table", table.as_str()),
                ("source", source.as_str()),
                ("detect", published.detect),
            ])?;
        }

        encoder
            .encode_descriptor(
                "sockwatch_build",
                "The version of sockwatch.",
                None,
                MetricType::Info,
            )?
            .encode_info(&[("version", env!("CARGO_PKG_VERSION"))])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::{Family, SourceKind, Table, Transport};
    use crate::source::reads::Reads;
    use std::time::Duration;

    use crate::event::sample as event;

    #[test]
    fn labels_are_the_fields_that_apply() {
        let v4 = event("0.0.0.0", 80, None, Some(b"nginx"));
        assert_eq!(
            labels(&v4, false),
            [
                ("proto", "inet".to_owned()),
                ("port", "80".to_owned()),
                ("addr", "0.0.0.0".to_owned()),
                ("transport", "tcp".to_owned()),
            ]
        );
        let with_processes = labels(&v4, true);
        assert_eq!(
            with_processes[4..],
            [("pid", "42".to_owned()), ("comm", "nginx".to_owned())]
        );
        let v6 = event("::", 443, Some(false), None);
        assert_eq!(labels(&v6, true)[4], ("v6only", "0".to_owned()));
        assert_eq!(labels(&v6, true).len(), 5, "no owner looked up: no pid");
        let mut unix = v4.clone();
        unix.endpoint = crate::endpoint::Endpoint::unix(
            Transport::Stream,
            crate::endpoint::UnixName::path(b"/run/app one.sock"),
        );
        assert_eq!(
            labels(&unix, false),
            [
                ("proto", "unix".to_owned()),
                ("path", "/run/app one.sock".to_owned()),
                ("transport", "stream".to_owned()),
            ],
            "a unix socket has a path, no port or address"
        );
    }

    #[test]
    fn the_exposition_as_promtool_reads_it() {
        let tricky = event("127.0.0.1", 9000, None, Some(b"a\"b\\c\nd"));
        let published = Arc::new(Published {
            endpoints: vec![
                labels(&event("0.0.0.0", 80, None, None), false),
                labels(&tricky, true),
            ],
            appeared: 3,
            closed: 1,
            detect: "poll",
        });
        let reads = Reads::new();
        let tcp = Table::new(Transport::Tcp, Family::Inet);
        reads.record(SourceKind::Netlink, &[tcp], [], Duration::from_micros(30));
        reads.set_routes([(tcp, SourceKind::Netlink)]);
        let text = render(&published, reads.tally());
        let expected = [
            "# HELP sockwatch_listening An endpoint that listens now (a TCP socket in LISTEN, a bound unconnected UDP socket, a unix socket in LISTEN or a bound unix dgram socket): 1 per endpoint, gone when it closes.",
            "# TYPE sockwatch_listening gauge",
            r#"sockwatch_listening{proto="inet",port="80",addr="0.0.0.0",transport="tcp"} 1"#,
            r#"sockwatch_listening{proto="inet",port="9000",addr="127.0.0.1",transport="tcp",pid="42",comm="a\"b\\c\nd"} 1"#,
            "# HELP sockwatch_events_total Endpoints that appeared (socket, counting those listening at start) or closed (socket-closed).",
            "# TYPE sockwatch_events_total counter",
            r#"sockwatch_events_total{event="socket"} 3"#,
            r#"sockwatch_events_total{event="socket-closed"} 1"#,
            "# HELP sockwatch_reads_total Complete reads of each socket table, by the source that read it.",
            "# TYPE sockwatch_reads_total counter",
            r#"sockwatch_reads_total{source="netlink",table="tcp"} 1"#,
        ];
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[..expected.len()], expected, "{text}");
        for wanted in [
            r#"sockwatch_read_failures_total{source="netlink",table="tcp"} 0"#,
            "# TYPE sockwatch_read_seconds histogram",
            r#"sockwatch_read_seconds_bucket{source="netlink",le="2.5e-05"} 0"#,
            r#"sockwatch_read_seconds_bucket{source="netlink",le="5e-05"} 1"#,
            r#"sockwatch_read_seconds_bucket{source="netlink",le="+Inf"} 1"#,
            r#"sockwatch_read_seconds_count{source="netlink"} 1"#,
            "# TYPE sockwatch_source_info gauge",
            r#"sockwatch_source_info{table="tcp",source="netlink",detect="poll"} 1"#,
            "# TYPE sockwatch_build_info gauge",
        ] {
            assert!(lines.contains(&wanted), "no {wanted:?} in\n{text}");
        }
        assert!(
            lines.contains(
                &format!(
                    r#"sockwatch_build_info{{version="{}"}} 1"#,
                    env!("CARGO_PKG_VERSION")
                )
                .as_str()
            ),
            "{text}"
        );
    }

    #[test]
    fn nothing_listening_is_a_family_without_series() {
        let text = render(&Arc::new(Published::default()), Tally::default());
        assert!(
            text.contains("# TYPE sockwatch_listening gauge\n# HELP"),
            "{text}"
        );
        assert!(text.contains(r#"sockwatch_events_total{event="socket"} 0"#));
    }
}
