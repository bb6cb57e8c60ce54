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
    // Created out of order, to show the listing sorts: transport, family,
    // port, then address (as numbers: 127.0.0.9 before 127.0.0.10).
    let _sockets = [
        udp_with("[::]:6000", Some(false)),
        udp_with("[::]:5353", Some(true)),
        udp("127.0.0.1:53"),
        udp("0.0.0.0:53"),
        tcp_with("[::1]:8443", Some(true), false),
        tcp_with("[::]:3000", Some(false), false),
        tcp_with("[::1]:22", Some(true), false),
        tcp("0.0.0.0:8080"),
        tcp("127.0.0.10:80"),
        tcp("127.0.0.9:80"),
        // An SO_REUSEPORT pair is one endpoint.
        tcp_with("127.0.0.1:9000", None, true),
        tcp_with("127.0.0.1:9000", None, true),
    ];
    let out = run(source, &["list"]);
    assert_eq!(out.code(), 0, "{out}");
    assert_lines(
        &out.lines(),
        &[
            "socket PROTO=inet PORT=80 ADDR=127.0.0.9 TRANSPORT=tcp",
            "socket PROTO=inet PORT=80 ADDR=127.0.0.10 TRANSPORT=tcp",
            "socket PROTO=inet PORT=8080 ADDR=0.0.0.0 TRANSPORT=tcp",
            "socket PROTO=inet PORT=9000 ADDR=127.0.0.1 TRANSPORT=tcp",
            &v6(
                source,
                "socket PROTO=inet6 PORT=22 ADDR=::1 TRANSPORT=tcp",
                true,
            ),
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
            "socket PROTO=inet PORT=53 ADDR=0.0.0.0 TRANSPORT=udp",
            "socket PROTO=inet PORT=53 ADDR=127.0.0.1 TRANSPORT=udp",
            &v6(
                source,
                "socket PROTO=inet6 PORT=5353 ADDR=:: TRANSPORT=udp",
                true,
            ),
            &v6(
                source,
                "socket PROTO=inet6 PORT=6000 ADDR=:: TRANSPORT=udp",
                false,
            ),
        ],
    );
}

fn excludes_clients_connected_and_auto_bound_sockets(source: &str) {
    let _ns = Netns::enter();
    let _server = udp("127.0.0.1:53");
    let _server6 = udp_with("[::1]:53", Some(true));
    let _connected = udp_connected("127.0.0.1:5000", "127.0.0.1:53");
    let _connected6 = udp_connected("[::1]:5000", "[::1]:53");
    let auto = udp_auto_bound("127.0.0.1:53");
    let auto6 = udp_auto_bound("[::1]:53");
    let zero = udp_bound_to_port_zero("127.0.0.1:0");
    // The listener closes once it has accepted: were the client or the
    // accepted socket taken for a listener, port 8080 or the client's
    // port would still be listed.
    let listener = tcp("127.0.0.1:8080");
    let _connection = tcp_connection(&listener);
    let listener6 = tcp_with("[::1]:8080", Some(true), false);
    let _connection6 = tcp_connection(&listener6);
    drop((listener, listener6));
    let out = run(source, &["list"]);
    assert_eq!(out.code(), 0, "{out}");
    let mut expected = vec![
        "socket PROTO=inet PORT=53 ADDR=127.0.0.1 TRANSPORT=udp".to_string(),
        v6(
            source,
            "socket PROTO=inet6 PORT=53 ADDR=::1 TRANSPORT=udp",
            true,
        ),
    ];
    if source == "proc" {
        // A documented limit: /proc cannot tell an auto-bound client from
        // a server (sock_diag's bytecode can).
        let mut inet = [
            format!(
                "socket PROTO=inet PORT={} ADDR=0.0.0.0 TRANSPORT=udp",
                local_port(&auto)
            ),
            format!(
                "socket PROTO=inet PORT={} ADDR=127.0.0.1 TRANSPORT=udp",
                local_port(&zero)
            ),
        ];
        inet.sort_by_key(|l| {
            l.split_whitespace().nth(2).unwrap()[5..]
                .parse::<u16>()
                .unwrap()
        });
        expected.splice(1..1, inet);
        expected.push(format!(
            "socket PROTO=inet6 PORT={} ADDR=:: TRANSPORT=udp",
            local_port(&auto6)
        ));
    }
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    assert_lines(&out.lines(), &expected);
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
        tcp("127.0.0.9:8181"),
        udp("127.0.0.1:53"),
        udp_with("[::1]:5353", Some(true)),
    ];
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["socket", "PORT=8000-8099"],
            &["socket PROTO=inet PORT=8080 ADDR=127.0.0.1 TRANSPORT=tcp"],
        ),
        (
            &["socket TRANSPORT=udp or socket PORT=80"],
            &[
                "socket PROTO=inet PORT=80 ADDR=0.0.0.0 TRANSPORT=tcp",
                "socket PROTO=inet PORT=53 ADDR=127.0.0.1 TRANSPORT=udp",
                "socket PROTO=inet6 PORT=5353 ADDR=::1 TRANSPORT=udp",
            ],
        ),
        // Positional values: PROTO, PORT, ADDR, TRANSPORT.
        (
            &["socket", "inet", "80"],
            &["socket PROTO=inet PORT=80 ADDR=0.0.0.0 TRANSPORT=tcp"],
        ),
        (&["socket", "inet6", "80"], &[]),
        (
            &["socket inet 53 127.0.0.1 udp"],
            &["socket PROTO=inet PORT=53 ADDR=127.0.0.1 TRANSPORT=udp"],
        ),
        // fnmatch globs.
        (
            &["socket", "PORT=8?8*"],
            &[
                "socket PROTO=inet PORT=8080 ADDR=127.0.0.1 TRANSPORT=tcp",
                "socket PROTO=inet PORT=8181 ADDR=127.0.0.9 TRANSPORT=tcp",
            ],
        ),
        (
            &["socket", "ADDR=*:*"],
            &["socket PROTO=inet6 PORT=5353 ADDR=::1 TRANSPORT=udp"],
        ),
        (
            &["socket", "TRANSPORT!=tcp", "PROTO=inet"],
            &["socket PROTO=inet PORT=53 ADDR=127.0.0.1 TRANSPORT=udp"],
        ),
        // CIDR: the wildcard listener reaches 127.0.0.0/30, 127.0.0.9 is
        // outside it.
        (
            &["socket ADDR=127.0.0.0/30 TRANSPORT=tcp"],
            &[
                "socket PROTO=inet PORT=80 ADDR=0.0.0.0 TRANSPORT=tcp",
                "socket PROTO=inet PORT=8080 ADDR=127.0.0.1 TRANSPORT=tcp",
            ],
        ),
        // Grouping, over several lines: the list is the endpoints that
        // satisfy some clause.
        (
            &["(socket PORT=53 or\n socket PORT=8181) and socket PORT=80"],
            &[
                "socket PROTO=inet PORT=80 ADDR=0.0.0.0 TRANSPORT=tcp",
                "socket PROTO=inet PORT=8181 ADDR=127.0.0.9 TRANSPORT=tcp",
                "socket PROTO=inet PORT=53 ADDR=127.0.0.1 TRANSPORT=udp",
            ],
        ),
    ];
    for (condition, expected) in cases {
        let mut args = vec!["list"];
        args.extend_from_slice(condition);
        let out = run(source, &args);
        assert_eq!(out.code(), 0, "list {condition:?}: {out}");
        let expected: Vec<String> = expected
            .iter()
            .map(|l| match l.contains("inet6") {
                true => v6(source, l, true),
                false => l.to_string(),
            })
            .collect();
        let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
        eprintln!("list {condition:?}");
        assert_lines(&out.lines(), &expected);
    }
}
