//! The manual page that `sockwatch man` prints: sockwatch(1), in roff.
//!
//! What the parser knows (the synopsis, every option with its help, each
//! command's own options and notes) is rendered from the clap definition by
//! clap_mangen, so the page cannot drift from the command line. What a
//! parser cannot know is written here: the description, the condition
//! grammar (its keys taken from the one table of fields), the exit status
//! (from the one table in [`crate::exit`]) and examples, each of which a
//! test parses as a command line.

use std::io::{self, Write};

use clap_mangen::Man;
use clap_mangen::roff::{Inline, Roff, bold, roman};

use crate::exit;
use crate::field::Field;

/// What sockwatch is for, in the words of the README's opening.
const DESCRIPTION: &[&str] = &[
    "sockwatch reads the kernel's tables of listening sockets, through sock_diag netlink \
     (what `ss` uses) or, where that is unavailable, /proc/net, and reports listening \
     endpoints as they appear and close, as Upstart-style events: \
     `socket PROTO=inet PORT=80 ADDR=0.0.0.0 TRANSPORT=tcp`.",
    "A daemon that listens is ready: from then on the kernel queues its connections. \
     sockwatch finds that out without connecting to the service, so it writes nothing to \
     the service's logs, needs no privilege and treats IPv4, IPv6, TCP and UDP alike. \
     Through sock_diag, closing is pushed by the kernel and seen at once; new listeners \
     are found by polling every --interval.",
    "A listening endpoint is a TCP socket in LISTEN or a bound, unconnected UDP socket, \
     identified by transport, family, address and port; several sockets on one endpoint \
     (SO_REUSEPORT workers) are one endpoint. Unix-domain sockets too: stream and \
     seqpacket sockets in LISTEN and bound dgram sockets, identified by transport and name \
     (`socket PROTO=unix SOCKET_PATH=/run/cups/cups.sock TRANSPORT=stream`, abstract names \
     as `@name`).",
];

/// The condition grammar: the README's "Conditions" in short. The keys
/// are filled in from [`Field`].
fn conditions() -> Vec<String> {
    let names = |fields: &[Field]| {
        fields
            .iter()
            .map(|field| format!("`{}`", field.name()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    vec![
        "Upstart's `start on` syntax (init(5)), evaluated on the current set of listening \
         endpoints: a condition holds while it is true, not when an event passes. `wait` \
         waits for it, `run --ready-on` tests it over the service's own endpoints, and \
         `list` and `watch` print only the endpoints that satisfy one of its `socket` clauses."
            .to_owned(),
        format!(
            "Keys: {}. Positional values stand for {} in that order, until the first named \
             key: `socket inet 80` is `socket PROTO=inet PORT=80`.",
            names(&Field::ALL),
            names(&Field::POSITIONAL),
        ),
        "Values are typed. `PORT` and `PID` are numbers; `PORT=8000-8099` is an inclusive \
         range. `ADDR` is an IPv4 or IPv6 address (`ADDR=::1`) or a CIDR block \
         (`ADDR=10.0.0.0/8`). Values may be fnmatch(3) globs (`PORT=80*`, `COMM=ng*`), \
         matched against the field as events print it. A value may be quoted, \
         `\"...\"`, with the escapes `\\\"`, `\\\\`, `\\n`, `\\t`, `\\r` and `\\xNN`."
            .to_owned(),
        "Reachability: `ADDR` and `PROTO` say what a client addressing that value would \
         reach. A wildcard listener (`0.0.0.0`, `::`) satisfies every address of its family; \
         a dual-stack `::` listener (`V6ONLY=0`) also satisfies every IPv4 address and \
         `PROTO=inet`. An IPv4-mapped listener or value is the IPv4 one. A block holds when \
         the listener reaches some address in it. Globs take no part in reachability: \
         `ADDR=127.*` does not match a `0.0.0.0` listener."
            .to_owned(),
        "Unix sockets: `SOCKET_PATH` is a glob over the name as bound, and holds only while \
         the path still leads to the listening socket (not after its file was unlinked or \
         replaced). `PROTO=unix` with `PORT` or `ADDR` is an error. Through /proc, whose \
         /proc/net/unix can be forged by a name holding a newline, a unix listener satisfies \
         a condition only when a visible process holds its socket."
            .to_owned(),
        "`KEY!=VALUE` is exactly the negation of `KEY=VALUE` where the key is present; where \
         it is absent (`V6ONLY` of an IPv4 socket) both are false. A fact sockwatch cannot \
         read (the owner of another user's socket) is unknown: a condition that depends on \
         it neither holds nor fails on it."
            .to_owned(),
        "`and`, `or` and parentheses combine clauses, and line breaks are allowed; mixing \
         `and` and `or` at one level without parentheses is refused. A malformed condition, \
         or a term that can never hold (`ADDR=localhost`, `ADDR=[::]:3000`, `PORT=0`, two \
         different ports in one clause), exits 2 naming the position and what to write \
         instead."
            .to_owned(),
    ]
}

/// One example of the EXAMPLES section: what it does, and the command.
pub struct Example {
    /// What the command does, as a sentence.
    pub what: &'static str,
    /// The command line, as typed in a shell.
    pub command: &'static str,
}

/// The EXAMPLES section. Each command is a whole sockwatch command line,
/// which a test parses.
pub const EXAMPLES: &[Example] = &[
    Example {
        what: "Print the endpoints listening now, then only the UDP ones, as JSON.",
        command: "sockwatch list\nsockwatch list --json socket TRANSPORT=udp",
    },
    Example {
        what: "Stream events as listeners come and go on ports 8000 to 8099.",
        command: "sockwatch watch --no-initial socket PORT=8000-8099",
    },
    Example {
        what: "Wait up to 30 seconds for PostgreSQL to listen on IPv4 (a dual-stack \
               listener on :: counts); exits 124 if it does not.",
        command: "sockwatch wait --timeout 30s socket PROTO=inet PORT=5432",
    },
    Example {
        what: "Wait for both ports, or for a listener to go.",
        command: "sockwatch wait 'socket PORT=80 and socket PORT=443'\n\
                  sockwatch wait --gone socket TRANSPORT=tcp PORT=8080",
    },
    Example {
        what: "Log each change of TCP listeners; the hook gets the event's fields in its \
               environment.",
        command: "sockwatch watch --no-initial socket TRANSPORT=tcp --exec sh -c \\\n    \
                  'logger -t sockwatch \"$EVENT $TRANSPORT $ADDR port $PORT\"'",
    },
    Example {
        what: "Wait for PHP-FPM's socket.",
        command: "sockwatch wait --timeout 30s socket PROTO=unix SOCKET_PATH=/run/php/php-fpm.sock",
    },
    Example {
        what: "Run cupsd under systemd (Type=notify) and send READY=1 once it listens on \
               port 631.",
        command: "sockwatch run --ready-on 'socket PORT=631' -- /usr/sbin/cupsd -f",
    },
    Example {
        what: "A container health check: exits 0 if something listens on port 8080 within \
               2 seconds, 124 if not.",
        command: "sockwatch wait --timeout 2s 'socket PORT=8080'",
    },
    Example {
        what: "Serve the listening endpoints to Prometheus at \
               http://127.0.0.1:9847/metrics until stopped.",
        command: "sockwatch export --listen 127.0.0.1:9847",
    },
    Example {
        what: "Keep a file of the TCP endpoints, and the processes behind them, for \
               node_exporter's textfile collector (Debian's directory).",
        command: "sockwatch export --processes \\\n    \
                  --textfile /var/lib/prometheus/node-exporter/sockwatch.prom socket TRANSPORT=tcp",
    },
];

/// The manual page for `command` (the whole command line: `Args`).
pub fn page(command: clap::Command) -> io::Result<Vec<u8>> {
    let man = Man::new(command.clone().subcommand_value_name("COMMAND"));
    // The roff crate's preamble once, then the title by hand: clap_mangen
    // drops an empty date from `.TH`, which shifts the fields after it.
    // The page carries no date, so that a build is reproducible.
    let mut out = Vec::new();
    Roff::new().to_writer(&mut out)?;
    writeln!(
        out,
        ".TH SOCKWATCH 1 \"\" \"sockwatch {}\" \"User Commands\"",
        command.get_version().unwrap_or_default()
    )?;
    out.extend(piece(|w| man.render_name_section(w), None)?);
    out.extend(piece(|w| man.render_synopsis_section(w), None)?);

    let mut roff = Roff::new();
    roff.control("SH", ["DESCRIPTION"]);
    paragraphs(&mut roff, DESCRIPTION.iter().copied());
    out.extend(piece(|w| roff.to_writer(w), None)?);

    out.extend(piece(|w| man.render_options_section(w), None)?);
    out.extend(commands(&command)?);

    let mut roff = Roff::new();
    roff.control("SH", ["CONDITIONS"]);
    roff.control("RS", ["4"]).control("nf", []);
    roff.text([roman(
        "[ready on] socket [VALUE...] [KEY=VALUE | KEY!=VALUE]... [(and|or) ...]",
    )]);
    roff.control("fi", []).control("RE", []);
    roff.control("PP", []);
    paragraphs(&mut roff, conditions().iter().map(String::as_str));

    roff.control("SH", ["EXIT STATUS"]);
    for (status, meaning) in exit::TABLE {
        roff.control("TP", []);
        roff.text([bold(status.to_string())]);
        roff.text(marked(meaning));
    }
    roff.control("PP", []);
    roff.text(marked(
        "When the service of `run` dies of signal N, sockwatch dies of signal N itself, so a \
         supervisor sees the service's own end.",
    ));

    roff.control("SH", ["EXAMPLES"]);
    for example in EXAMPLES {
        roff.control("PP", []);
        roff.text(marked(example.what));
        roff.control("RS", ["4"]).control("nf", []);
        for line in example.command.lines() {
            roff.text([roman(line)]);
        }
        roff.control("fi", []).control("RE", []);
    }

    roff.control("SH", ["SEE ALSO"]);
    roff.text([
        bold("ss"),
        roman("(8), "),
        bold("sock_diag"),
        roman("(7), "),
        bold("systemd.service"),
        roman("(5), "),
        bold("timeout"),
        roman("(1)"),
    ]);
    out.extend(piece(|w| roff.to_writer(w), None)?);

    out.extend(piece(|w| man.render_version_section(w), None)?);
    Ok(out)
}

/// The COMMANDS section: each subcommand's synopsis, help and options as
/// clap_mangen renders them for a page of its own, under a subsection.
fn commands(command: &clap::Command) -> io::Result<Vec<u8>> {
    let mut out = b".SH COMMANDS\n".to_vec();
    for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        let name = format!("{} {}", command.get_name(), sub.get_name());
        // Taken before the parent is built, `sub` has only its own options:
        // the common ones are under OPTIONS once, and `-h` goes without
        // saying.
        let man = Man::new(sub.clone().bin_name(&name).disable_help_flag(true));
        let mut roff = Roff::new();
        roff.control("SS", [name.as_str()]);
        out.extend(piece(|w| roff.to_writer(w), None)?);
        out.extend(piece(|w| man.render_synopsis_section(w), Some("SYNOPSIS"))?);

        let mut roff = Roff::new();
        if let Some(about) = sub.get_long_about().or_else(|| sub.get_about()) {
            roff.control("PP", []);
            roff.text(marked(&about.to_string()));
        }
        out.extend(piece(|w| roff.to_writer(w), None)?);

        if sub.get_arguments().next().is_some() {
            out.extend(piece(|w| man.render_options_section(w), Some("OPTIONS"))?);
        }

        // The notes after the examples; the examples are under EXAMPLES.
        let mut roff = Roff::new();
        if let Some(after) = sub.get_after_long_help().or_else(|| sub.get_after_help()) {
            let after = after.to_string();
            let notes = after
                .split("\n\n")
                .filter(|paragraph| !paragraph.starts_with("Examples:"));
            for note in notes {
                roff.control("PP", []);
                roff.text(marked(
                    &note.split_whitespace().collect::<Vec<_>>().join(" "),
                ));
            }
        }
        out.extend(piece(|w| roff.to_writer(w), None)?);
    }
    Ok(out)
}

/// What `render` writes, without the preamble the roff crate puts before
/// every rendering, and without the `.SH` line of `heading` when given.
fn piece(
    render: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    heading: Option<&str>,
) -> io::Result<Vec<u8>> {
    let mut text = Vec::new();
    render(&mut text)?;
    let text = String::from_utf8(text).map_err(io::Error::other)?;
    let heading = heading.map(|heading| format!(".SH {heading}"));
    let kept: String = text
        .lines()
        .filter(|line| !PREAMBLE.contains(line))
        .filter(|line| heading.as_deref() != Some(*line))
        .flat_map(|line| [line, "\n"])
        .collect();
    Ok(kept.into_bytes())
}

/// The lines the roff crate writes before every rendering (a string for
/// the apostrophe, which groff would otherwise print as a closing quote).
const PREAMBLE: [&str; 2] = [r".ie \n(.g .ds Aq \(aq", ".el .ds Aq '"];

/// Paragraphs of running text, with `code` in bold.
fn paragraphs<'a>(roff: &mut Roff, texts: impl Iterator<Item = &'a str>) {
    for (i, text) in texts.enumerate() {
        if i > 0 {
            roff.control("PP", []);
        }
        roff.text(marked(text));
    }
}

/// Text with `backticks` around code, as the README writes it, as roman
/// and bold runs.
fn marked(text: &str) -> Vec<Inline> {
    text.split('`')
        .enumerate()
        .filter(|(_, run)| !run.is_empty())
        .map(|(i, run)| if i % 2 == 1 { bold(run) } else { roman(run) })
        .collect()
}
