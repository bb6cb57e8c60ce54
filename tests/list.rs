//! `sockwatch list`: the exact set, in order, as text and JSON.

use crate::each_source;
use crate::support::*;

each_source!(
    lists_every_kind_of_listener_in_order,
    excludes_clients_connected_and_auto_bound_sockets,
    json_lines_parse_with_contract_fields,
    condition_filters_the_list,
);

fn lists_every_kind_of_listener_in_order(source: &str) {
    let _ns = Netns::enter();
    // Created out of order, to show the listing sorts.
    let _sockets = [
        udp_with("[::]:5353", Some(true)),
        udp("127.0.0.1:53"),
        tcp_with("[::1]:8443", Some(true), false),
        tcp_with("[::]:3000", Some(false), false),
        tcp("127.0.0.1:8080"),
        tcp("0.0.0.0:80"),
        // An SO_REUSEPORT pair is one endpoint.
        tcp_with("127.0.0.1:9000", None, true),
        tcp_with("127.0.0.1:9000", None, true),
    ];
    let out = run(source, &["list"]);
    assert_eq!(out.code(), 0, "{out}");
    assert_lines(
        &out.lines(),
        &[
            "socket PROTO=inet PORT=80 ADDR=0.0.0.0 TRANSPORT=tcp",
            "socket PROTO=inet PORT=8080 ADDR=127.0.0.1 TRANSPORT=tcp",
            "socket PROTO=inet PORT=9000 ADDR=127.0.0.1 TRANSPORT=tcp",
            &v6(
                source,
                "socket PROTO=inet6 PORT=3000 ADDR=:: TRANSPORT=tcp",
                false,
            ),
            &v6(
                source,
                "socket PROTO=inet6 PORT=8443 ADDR=::1 TRANSPORT=tcp",
                true,
            ),
            "socket PROTO=inet PORT=53 ADDR=127.0.0.1 TRANSPORT=udp",
            &v6(
                source,
                "socket PROTO=inet6 PORT=5353 ADDR=:: TRANSPORT=udp",
                true,
            ),
        ],
    );
}

fn excludes_clients_connected_and_auto_bound_sockets(source: &str) {
    let _ns = Netns::enter();
    let server = udp("127.0.0.1:53");
    let listener = tcp("127.0.0.1:80");
    let _connected = udp_connected("127.0.0.1:5000", "127.0.0.1:53");
    let auto = udp_auto_bound("127.0.0.1:53");
    let _connection = tcp_connection(&listener);
    let out = run(source, &["list"]);
    assert_eq!(out.code(), 0, "{out}");
    let mut expected = vec![
        "socket PROTO=inet PORT=80 ADDR=127.0.0.1 TRANSPORT=tcp".to_string(),
        "socket PROTO=inet PORT=53 ADDR=127.0.0.1 TRANSPORT=udp".to_string(),
    ];
    if source == "proc" {
        // A documented limit: /proc cannot tell an auto-bound client from
        // a server (sock_diag's bytecode can).
        let port = auto.local_addr().unwrap().port();
        expected.push(format!(
            "socket PROTO=inet PORT={port} ADDR=0.0.0.0 TRANSPORT=udp"
        ));
    }
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    assert_lines(&out.lines(), &expected);
    drop(server);
}

fn json_lines_parse_with_contract_fields(source: &str) {
    let _ns = Netns::enter();
    let _pair = [
        tcp_with("127.0.0.1:9000", None, true),
        tcp_with("127.0.0.1:9000", None, true),
    ];
    let _six = tcp_with("[::]:3000", Some(false), false);
    let out = run(source, &["list", "--json"]);
    assert_eq!(out.code(), 0, "{out}");
    let objects: Vec<serde_json::Value> = out
        .lines()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(objects.len(), 2, "{out}");
    let line = out.lines()[0];
    let contract = [
        "event",
        "proto",
        "port",
        "addr",
        "transport",
        "v6only",
        "uid",
        "inodes",
        "source",
        "time",
    ];
    let positions: Vec<usize> = contract
        .iter()
        .map(|k| {
            line.find(&format!("\"{k}\":"))
                .unwrap_or_else(|| panic!("no {k}: {line}"))
        })
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "fields out of order: {line}"
    );
    let pair = &objects[0];
    assert_eq!(pair["event"], "socket");
    assert_eq!(pair["proto"], "inet");
    assert_eq!(pair["port"], 9000);
    assert_eq!(pair["addr"], "127.0.0.1");
    assert_eq!(pair["transport"], "tcp");
    assert!(pair["v6only"].is_null());
    assert_eq!(pair["uid"], 0);
    assert_eq!(
        pair["inodes"].as_array().unwrap().len(),
        2,
        "two sockets, one endpoint"
    );
    assert_eq!(pair["source"], source);
    let time = pair["time"].as_str().unwrap();
    assert!(
        time.len() >= 20 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
        "{time}"
    );
    let six = &objects[1];
    assert_eq!(six["proto"], "inet6");
    assert_eq!(six["addr"], "::");
    if source == "netlink" {
        assert_eq!(six["v6only"], false);
    }
}

fn condition_filters_the_list(source: &str) {
    let _ns = Netns::enter();
    let _sockets = [
        tcp("0.0.0.0:80"),
        tcp("127.0.0.1:8080"),
        udp("127.0.0.1:53"),
    ];
    let out = run(source, &["list", "socket", "PORT=8000-8099"]);
    assert_eq!(out.code(), 0, "{out}");
    assert_lines(
        &out.lines(),
        &["socket PROTO=inet PORT=8080 ADDR=127.0.0.1 TRANSPORT=tcp"],
    );
    let out = run(source, &["list", "socket TRANSPORT=udp or socket PORT=80"]);
    assert_lines(
        &out.lines(),
        &[
            "socket PROTO=inet PORT=80 ADDR=0.0.0.0 TRANSPORT=tcp",
            "socket PROTO=inet PORT=53 ADDR=127.0.0.1 TRANSPORT=udp",
        ],
    );
}
