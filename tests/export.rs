//! `sockwatch export`: Prometheus metrics over HTTP and in a textfile, as a
//! scraper, node_exporter and promtool see them.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::each_source;
use crate::owners::{raw_named_listener, stop};
use crate::support::*;

each_source!(
    scraped_series_appear_and_vanish_with_listeners,
    the_textfile_follows_listeners_and_is_replaced_whole,
);

/// Where the exporter under test listens, in the test's own namespace.
const LISTEN: &str = "127.0.0.1:9847";

/// An answer over HTTP: the status line and the body.
#[derive(Debug)]
struct Answer {
    status: String,
    content_type: Option<String>,
    body: String,
}

/// `GET path` from the exporter, with a bounded wait for each step.
fn get(path: &str) -> std::io::Result<Answer> {
    let mut stream = TcpStream::connect(LISTEN)?;
    stream.set_read_timeout(Some(PROMPTLY))?;
    stream.set_write_timeout(Some(PROMPTLY))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {LISTEN}\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let mut lines = head.lines();
    let status = lines.next().unwrap_or("").to_owned();
    let content_type = lines
        .filter_map(|l| l.split_once(": "))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        .map(|(_, value)| value.to_owned());
    Ok(Answer {
        status,
        content_type,
        body: body.to_owned(),
    })
}

/// Scrapes `/metrics` until `wanted` holds of the body, promptly.
#[track_caller]
fn scrape_until(what: &str, wanted: impl Fn(&str) -> bool) -> String {
    let until = Instant::now() + PROMPTLY;
    let mut last = None;
    while Instant::now() < until {
        match get("/metrics") {
            Ok(answer) if answer.status == "HTTP/1.1 200 OK" => {
                assert_eq!(
                    answer.content_type.as_deref(),
                    Some("text/plain; version=0.0.4; charset=utf-8")
                );
                if wanted(&answer.body) {
                    return answer.body;
                }
                last = Some(answer);
            }
            Ok(answer) => last = Some(answer),
            Err(_) => {}
        }
        thread::sleep(Duration::from_millis(10));
    }
    panic!("no scrape {what} within {PROMPTLY:?}; the last answer: {last:#?}");
}

/// Whether the exposition has `line` as a whole line.
fn has_line(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

/// The `sockwatch_listening` lines of an exposition.
fn listening(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| l.starts_with("sockwatch_listening{"))
        .collect()
}

/// Asserts that `promtool check metrics` accepts `text`.
#[track_caller]
fn promtool_accepts(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; .ci/run installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let status = wait_deadline(&mut child, PROMPTLY);
    let mut said = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut said)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut said)
        .unwrap();
    assert!(
        status.success() && said.is_empty(),
        "promtool check metrics: {status}\n{said}\n--- input ---\n{text}"
    );
}

fn scraped_series_appear_and_vanish_with_listeners(source: &str) {
    let _ns = Netns::enter();
    let _other = tcp("127.0.0.1:8080");
    let _exporter = Running::start(
        source,
        &[
            "export",
            "--listen",
            LISTEN,
            "--interval",
            "20ms",
            "socket PORT=5432 or socket TRANSPORT=udp",
        ],
    );
    let postgres =
        r#"sockwatch_listening{proto="inet",port="5432",addr="127.0.0.1",transport="tcp"} 1"#;
    let first = scrape_until("at all", |_| true);
    assert_eq!(
        listening(&first),
        Vec::<&str>::new(),
        "the condition leaves out 8080 and 9847:\n{first}"
    );
    let server = tcp("127.0.0.1:5432");
    let dns = udp("[::1]:53");
    let v6 = match source {
        "netlink" => {
            r#"sockwatch_listening{proto="inet6",port="53",addr="::1",transport="udp",v6only="1"} 1"#
        }
        _ => r#"sockwatch_listening{proto="inet6",port="53",addr="::1",transport="udp"} 1"#,
    };
    let both = scrape_until("with both listeners", |text| listening(text).len() == 2);
    // What auto takes: kernel triggers where perf is allowed.
    let detect = if perf_allowed() { "kernel" } else { "changes" };
    assert_eq!(listening(&both), [postgres, v6], "{both}");
    assert!(
        has_line(&both, r#"sockwatch_events_total{event="socket"} 2"#),
        "{both}"
    );
    assert!(
        has_line(
            &both,
            &format!(
                r#"sockwatch_source_info{{table="tcp",source="{source}",detect="{detect}"}} 1"#
            )
        ),
        "{both}"
    );
    assert!(
        both.lines().any(|l| l.starts_with(&format!(
            r#"sockwatch_reads_total{{source="{source}",table="udp6"}} "#
        ))),
        "{both}"
    );
    promtool_accepts(&both);
    drop(server);
    let gone = scrape_until("without 5432", |text| !text.contains(r#"port="5432""#));
    assert_eq!(listening(&gone), [v6], "{gone}");
    assert!(
        has_line(&gone, r#"sockwatch_events_total{event="socket-closed"} 1"#),
        "{gone}"
    );
    drop(dns);
    scrape_until("without any endpoint", |text| listening(text).is_empty());
    // Nothing but /metrics.
    let other = get("/").unwrap();
    assert_eq!(other.status, "HTTP/1.1 404 Not Found", "{other:?}");
}

#[test]
fn a_silent_client_does_not_hold_up_a_scrape() {
    let _ns = Netns::enter();
    let _server = tcp("127.0.0.1:5432");
    let _exporter = Running::start("netlink", &["export", "--listen", LISTEN]);
    scrape_until("at all", |_| true);
    // Connected, saying nothing; another sends half a request.
    let _silent = TcpStream::connect(LISTEN).unwrap();
    let mut half = TcpStream::connect(LISTEN).unwrap();
    half.write_all(b"GET /metr").unwrap();
    let began = Instant::now();
    let answer = get("/metrics").unwrap();
    let took = began.elapsed();
    assert_eq!(answer.status, "HTTP/1.1 200 OK", "{answer:?}");
    assert!(answer.body.contains(r#"port="5432""#), "{answer:?}");
    // Far less than the 10 s the silent clients may take.
    assert!(took < Duration::from_secs(2), "the scrape took {took:?}");
}

/// A directory of the test's own.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sockwatch-test-{name}-{}-{:?}",
        std::process::id(),
        thread::current().id()
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// The names in `dir`.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Reads the textfile until `wanted` holds of it, promptly. Every version
/// read must be whole: it ends with the last series sockwatch writes.
#[track_caller]
fn textfile_until(path: &Path, what: &str, wanted: impl Fn(&str) -> bool) -> String {
    let until = Instant::now() + PROMPTLY;
    let mut last = None;
    while Instant::now() < until {
        if let Ok(text) = fs::read_to_string(path) {
            assert!(
                text.ends_with(&format!(
                    "sockwatch_build_info{{version=\"{}\"}} 1\n",
                    env!("CARGO_PKG_VERSION")
                )),
                "a partial textfile:\n{text}"
            );
            if wanted(&text) {
                return text;
            }
            last = Some(text);
        }
        thread::sleep(Duration::from_millis(2));
    }
    panic!("no textfile {what} within {PROMPTLY:?}; the last one:\n{last:?}");
}

fn the_textfile_follows_listeners_and_is_replaced_whole(source: &str) {
    let _ns = Netns::enter();
    let dir = scratch(&format!("textfile-{source}"));
    let path = dir.join("sockwatch.prom");
    let mut exporter = Running::start(
        source,
        &[
            "export",
            "--textfile",
            path.to_str().unwrap(),
            "--interval",
            "20ms",
        ],
    );
    let empty = textfile_until(&path, "at all", |_| true);
    assert_eq!(listening(&empty), Vec::<&str>::new(), "{empty}");
    let web = r#"sockwatch_listening{proto="inet",port="80",addr="0.0.0.0",transport="tcp"} 1"#;
    // Listeners come and go while the file is read: every version read is
    // whole (textfile_until checks each).
    for _ in 0..5 {
        let server = tcp("0.0.0.0:80");
        let text = textfile_until(&path, "with port 80", |text| has_line(text, web));
        promtool_accepts(&text);
        drop(server);
        textfile_until(&path, "without port 80", |text| listening(text).is_empty());
    }
    assert_eq!(names(&dir), ["sockwatch.prom"], "no temporary file is left");
    let status = exporter.signal(libc::SIGTERM);
    assert_eq!(status.code(), Some(0), "{status}");
    assert_eq!(
        names(&dir),
        Vec::<String>::new(),
        "a stopped exporter leaves no textfile claiming what listens"
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn label_values_are_escaped_in_both_outputs() {
    let _ns = Netns::enter();
    let dir = scratch("escaping");
    let path = dir.join("sockwatch.prom");
    let server = raw_named_listener(b"a\"b\\c\nd", 6000);
    let _exporter = Running::start(
        "netlink",
        &[
            "export",
            "--processes",
            "--listen",
            LISTEN,
            "--textfile",
            path.to_str().unwrap(),
            "socket PORT=6000",
        ],
    );
    let pid = server.id();
    let line = format!(
        r#"sockwatch_listening{{proto="inet",port="6000",addr="127.0.0.1",transport="tcp",pid="{pid}",comm="a\"b\\c\nd"}} 1"#
    );
    let scraped = scrape_until("with the named listener", |text| has_line(text, &line));
    promtool_accepts(&scraped);
    let written = textfile_until(&path, "with the named listener", |text| {
        has_line(text, &line)
    });
    promtool_accepts(&written);
    stop(server);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn bad_listen_addresses_and_textfiles_are_refused_at_start() {
    let _ns = Netns::enter();
    for (args, code, message) in [
        (
            &["export"][..],
            2,
            "the following required arguments were not provided",
        ),
        (
            &["export", "--listen", "localhost:9847"],
            2,
            "expected an IP address and a port",
        ),
        (
            &["export", "--listen", "127.0.0.1"],
            2,
            "expected an IP address and a port",
        ),
        (&["export", "--listen", "127.0.0.1:0"], 2, "port 0"),
        (
            &["export", "--textfile", "/tmp/sockwatch.txt"],
            2,
            "--textfile /tmp/sockwatch.txt: the name must end in .prom",
        ),
        (
            &["export", "--textfile", "/nonexistent/sockwatch.prom"],
            1,
            "sockwatch: --textfile: cannot use directory /nonexistent: No such file or directory",
        ),
        (
            &["export", "--listen", LISTEN, "socket PORT=0"],
            2,
            "bad condition",
        ),
    ] {
        let out = run("netlink", args);
        assert_eq!(out.code(), code, "{args:?}: {out}");
        assert!(out.stderr.contains(message), "{args:?}: {out}");
    }
    // A port in use is not the user's typing: a runtime error, said at once.
    let _taken = tcp(LISTEN);
    let out = run("netlink", &["export", "--listen", LISTEN]);
    assert_eq!(out.code(), 1, "{out}");
    assert_eq!(
        out.stderr.trim_end(),
        format!("sockwatch: failed to listen on {LISTEN}: Address already in use (os error 98)"),
        "{out}"
    );
}

/// The code block of the README whose first line is `first_line`.
fn readme_block(first_line: &str) -> String {
    let readme = include_str!("../README.md");
    let start = readme
        .find(&format!("\n{first_line}\n"))
        .unwrap_or_else(|| panic!("no block starting {first_line:?} in the README"));
    let block = &readme[start + 1..];
    let end = block.find("\n```").expect("the block ends");
    format!("{}\n", &block[..end])
}

/// Runs `promtool ARGS...` in `dir` and asserts that it succeeds.
#[track_caller]
fn promtool(dir: &Path, args: &[&str]) {
    let mut command = Command::new("promtool");
    command.args(args).current_dir(dir);
    let out = finish(command, PROMPTLY);
    assert_eq!(out.code(), 0, "promtool {args:?}: {out}");
}

/// The README's rules over series as sockwatch exports them: db1 listens
/// on 5432 for four minutes, then stops; web1, which is no database host,
/// never does.
const RULE_TESTS: &str = r#"
rule_files:
  - sockwatch-rules.yml
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'up{job="sockwatch", instance="db1.example.com:9847", role="db"}'
        values: '1x10'
      - series: 'up{job="sockwatch", instance="web1.example.com:9847"}'
        values: '1x10'
      - series: 'sockwatch_listening{job="sockwatch", instance="db1.example.com:9847", role="db", proto="inet", port="5432", addr="0.0.0.0", transport="tcp"}'
        values: '1x3 stale'
    alert_rule_test:
      - eval_time: 3m
        alertname: PostgresNotListening
      - eval_time: 3m
        alertname: PostgresStoppedListening
      - eval_time: 6m
        alertname: PostgresNotListening
        exp_alerts:
          - exp_labels:
              instance: db1.example.com:9847
              port: "5432"
              transport: tcp
      - eval_time: 6m
        alertname: PostgresStoppedListening
        exp_alerts:
          - exp_labels:
              job: sockwatch
              instance: db1.example.com:9847
              role: db
            exp_annotations:
              summary: nothing listens on TCP port 5432 on db1.example.com:9847
"#;

#[test]
fn the_readme_prometheus_config_and_alert_rules_hold() {
    let dir = scratch("readme-rules");
    fs::write(
        dir.join("prometheus.yml"),
        readme_block("# /etc/prometheus/prometheus.yml"),
    )
    .unwrap();
    fs::write(
        dir.join("sockwatch-rules.yml"),
        readme_block("# /etc/prometheus/sockwatch-rules.yml"),
    )
    .unwrap();
    fs::write(dir.join("tests.yml"), RULE_TESTS).unwrap();
    // The configuration, and the rule file it names.
    promtool(&dir, &["check", "config", "prometheus.yml"]);
    promtool(&dir, &["test", "rules", "tests.yml"]);
    let _ = fs::remove_dir_all(&dir);
}
