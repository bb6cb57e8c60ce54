//! Conditions: `ready on socket PROTO=inet PORT=80 and socket PORT=443`.
//!
//! The syntax is Upstart's `start on` (init(5)) so that people who know it
//! need nothing new: an event name (`socket`, the only one), positional
//! values for `PROTO`, `PORT`, `ADDR`, `TRANSPORT` until the first named key,
//! `KEY=VALUE` and `KEY!=VALUE` terms with fnmatch(3) globs, and clauses
//! combined with `and`, `or` and parentheses. Two extensions fit socket
//! facts: `PORT=8000-8099` ranges and `ADDR=10.0.0.0/8` CIDR blocks.
//!
//! The meaning differs from Upstart's in one deliberate way: a condition is
//! evaluated on the **current** set of endpoints (level, not edge), because
//! "is it listening now?" is the question users ask. And where Upstart reads
//! a mix of `and` and `or` left to right, we refuse it: nobody reads
//! `a and b or c` the same way twice.
//!
//! Values are typed from the parser to the match: a port or process id is a
//! number (`PORT=080` is port 80), an address an `IpAddr` or `IpNet`. A glob
//! matches the field as it is written (decimal without leading zeros, RFC
//! 5952 text). Reachability (`condition/reach.rs`) makes address and
//! protocol terms say what a client would find, and `KEY!=VALUE` is exactly
//! the negation of `KEY=VALUE` where KEY is present.
//!
//! Facts sockwatch could not read (the owner of another user's socket) are
//! unknown, not absent: evaluation is three-valued (Kleene's logic), so an
//! unknown fact never decides an answer on its own.
//!
//! The parser lives in `condition/parse.rs`; this file holds the model and
//! the matching.

mod glob;
mod parse;
mod reach;

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::endpoint::{Endpoint, Family, Table, Transport};
use crate::field::Field;

pub use parse::ConditionError;

use glob::Glob;

/// The facts a condition is evaluated on, for one endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The endpoint.
    pub endpoint: &'a Endpoint,
    /// `IPV6_V6ONLY`, already resolved by the caller: `None` for IPv4 (the
    /// field is absent), or for IPv6 where it could not be known.
    pub v6only: Option<bool>,
    /// The process holding it: `PID` and `COMM`.
    pub owner: OwnerFact<'a>,
    /// For a unix endpoint bound to a path, whether the path still leads to
    /// the listening socket (its file was not unlinked or replaced):
    /// unknown where it cannot be checked. `Yes` for abstract names and
    /// inet endpoints.
    pub path_current: Truth,
    /// Whether the endpoint's row is known to be the kernel's; an untrusted
    /// one (a /proc row of a unix socket that could not be verified) makes
    /// every clause about it unknown, so that a forged row never satisfies
    /// a condition.
    pub trusted: bool,
}

/// What is known of the process holding an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerFact<'a> {
    /// Not looked up, or no visible process holds it: `PID` and `COMM` are
    /// absent (`PID=1` and `PID!=1` are both false).
    Absent,
    /// The holder.
    Known {
        /// Its process id.
        pid: u32,
        /// Its command name, as lossless text (see [`crate::quote`]).
        comm: &'a str,
    },
    /// A holder exists but could not be read (another user's process): a
    /// term on `PID` or `COMM` is neither true nor false.
    Unknown,
}

/// A three-valued answer (Kleene's logic): `Unknown` where a fact could not
/// be read and the rest does not decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truth {
    /// Holds.
    Yes,
    /// Does not hold.
    No,
    /// Depends on a fact sockwatch could not read.
    Unknown,
}

impl Truth {
    fn not(self) -> Truth {
        match self {
            Truth::Yes => Truth::No,
            Truth::No => Truth::Yes,
            Truth::Unknown => Truth::Unknown,
        }
    }

    /// Kleene conjunction: false wins, then unknown.
    fn all(answers: impl IntoIterator<Item = Truth>) -> Truth {
        let mut result = Truth::Yes;
        for answer in answers {
            match answer {
                Truth::No => return Truth::No,
                Truth::Unknown => result = Truth::Unknown,
                Truth::Yes => {}
            }
        }
        result
    }

    /// Kleene disjunction: true wins, then unknown.
    fn any(answers: impl IntoIterator<Item = Truth>) -> Truth {
        Truth::all(answers.into_iter().map(Truth::not)).not()
    }
}

impl From<bool> for Truth {
    fn from(value: bool) -> Truth {
        if value { Truth::Yes } else { Truth::No }
    }
}

/// A number pattern: `PORT` and `PID`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Numbers {
    /// One number (`PORT=080` is 80).
    Exact(u32),
    /// `A-B`, inclusive.
    Range(u32, u32),
    /// A glob over the decimal text without leading zeros.
    Glob(Glob),
}

impl Numbers {
    fn matches(&self, number: u32) -> bool {
        match self {
            Numbers::Exact(n) => *n == number,
            Numbers::Range(low, high) => (*low..=*high).contains(&number),
            Numbers::Glob(glob) => glob.matches(&number.to_string()),
        }
    }
}

/// An address pattern.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Addrs {
    /// One address; IPv4-mapped ones are made IPv4. Matched by
    /// reachability.
    Ip(IpAddr),
    /// A CIDR block, likewise; holds when the listener reaches some address
    /// of it.
    Net(IpNet),
    /// A glob over the address as written: RFC 5952 text, and for an
    /// IPv4-mapped listener its IPv4 form too. No reachability: a glob
    /// describes text, and `0.0.0.0` is not text `127.*` matches.
    Glob(Glob),
}

/// What one term tests, typed by its field.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Test {
    /// `PROTO=`: the families the value names (a glob may name several).
    Proto(Vec<Family>),
    Port(Numbers),
    Addr(Addrs),
    /// `SOCKET_PATH=`: a glob over the name as bound (`@name` when
    /// abstract), which holds only while the path leads to the socket.
    SocketPath(Glob),
    /// `TRANSPORT=`: the transports the value names.
    Transport(Vec<Transport>),
    V6only(bool),
    Pid(Numbers),
    /// `COMM=`: a glob; a plain word is a glob without metacharacters.
    Comm(Glob),
    /// `NETNS=`: a glob over the namespace's name as events give it.
    Netns(Glob),
}

impl Test {
    pub(crate) fn field(&self) -> Field {
        match self {
            Test::Proto(_) => Field::Proto,
            Test::Port(_) => Field::Port,
            Test::Addr(_) => Field::Addr,
            Test::SocketPath(_) => Field::SocketPath,
            Test::Transport(_) => Field::Transport,
            Test::V6only(_) => Field::V6only,
            Test::Pid(_) => Field::Pid,
            Test::Comm(_) => Field::Comm,
            Test::Netns(_) => Field::Netns,
        }
    }

    /// The positive answer (`KEY=VALUE`), or `None` when the key is absent.
    fn answer(&self, facts: &Facts<'_>) -> Option<Truth> {
        let endpoint = facts.endpoint;
        let owner = || match facts.owner {
            OwnerFact::Absent => None,
            OwnerFact::Unknown => Some(Err(Truth::Unknown)),
            OwnerFact::Known { pid, comm } => Some(Ok((pid, comm))),
        };
        Some(match self {
            Test::Proto(families) => {
                if families.contains(&endpoint.family()) {
                    Truth::Yes
                } else if families.contains(&Family::Inet) {
                    reach::reaches_ipv4(facts)
                } else {
                    Truth::No
                }
            }
            Test::Port(numbers) => Truth::from(numbers.matches(u32::from(endpoint.port()?))),
            Test::Addr(Addrs::Ip(ip)) => reach::reaches_addr(facts, endpoint.ip()?, *ip),
            Test::Addr(Addrs::Net(net)) => reach::reaches_net(facts, endpoint.ip()?, net),
            Test::Addr(Addrs::Glob(glob)) => {
                let ip = endpoint.ip()?;
                let bound = reach::bound(ip);
                Truth::from(
                    glob.matches(&ip.to_string())
                        || (bound != ip && glob.matches(&bound.to_string())),
                )
            }
            Test::SocketPath(glob) => {
                let name = endpoint.unix_name()?;
                Truth::all([Truth::from(glob.matches(name.text())), facts.path_current])
            }
            Test::Transport(transports) => Truth::from(transports.contains(&endpoint.transport)),
            Test::V6only(wanted) => match (endpoint.family(), facts.v6only) {
                (Family::Inet | Family::Unix, _) => return None,
                (Family::Inet6, None) => Truth::Unknown,
                (Family::Inet6, Some(v6only)) => Truth::from(v6only == *wanted),
            },
            Test::Pid(numbers) => match owner()? {
                Ok((pid, _)) => Truth::from(numbers.matches(pid)),
                Err(unknown) => unknown,
            },
            Test::Comm(glob) => match owner()? {
                Ok((_, comm)) => Truth::from(glob.matches(comm)),
                Err(unknown) => unknown,
            },
            Test::Netns(glob) => Truth::from(glob.matches(endpoint.netns_label()?)),
        })
    }

    /// Whether the answer could depend on V6ONLY.
    fn depends_on_v6only(&self) -> bool {
        match self {
            Test::V6only(_) => true,
            Test::Proto(families) => families.contains(&Family::Inet),
            Test::Addr(Addrs::Ip(ip)) => ip.is_ipv4(),
            Test::Addr(Addrs::Net(net)) => matches!(net, IpNet::V4(_)),
            _ => false,
        }
    }
}

/// `KEY=VALUE` or `KEY!=VALUE`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Term {
    pub(crate) test: Test,
    pub(crate) negated: bool,
}

impl Term {
    /// `KEY=VALUE` as the test answers it; `KEY!=VALUE` is exactly its
    /// negation, reachability included. Both are false where the key is
    /// absent (Upstart's rule).
    fn truth(&self, facts: &Facts<'_>) -> Truth {
        match self.test.answer(facts) {
            None => Truth::No,
            Some(answer) if self.negated => answer.not(),
            Some(answer) => answer,
        }
    }
}

/// `socket TERM...`: satisfied by one endpoint that matches every term.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Clause {
    pub(crate) terms: Vec<Term>,
}

impl Clause {
    fn truth(&self, facts: &Facts<'_>) -> Truth {
        let answer = Truth::all(self.terms.iter().map(|t| t.truth(facts)));
        match (answer, facts.trusted) {
            // A row that may be forged decides nothing.
            (Truth::Yes, false) => Truth::Unknown,
            (answer, _) => answer,
        }
    }

    /// Whether some endpoint of `table` could satisfy the clause. Exact for
    /// TRANSPORT and PROTO, which every endpoint has; a positive term on a
    /// key only inet (`PORT`, `ADDR`) or only unix (`SOCKET_PATH`) endpoints
    /// have rules out the other tables; other keys never rule a table out.
    fn may_match(&self, table: Table) -> bool {
        self.terms.iter().all(|term| match &term.test {
            // A negated term is false where its key is absent, too.
            Test::Port(_) | Test::Addr(_) => table.family != Family::Unix,
            Test::SocketPath(_) => table.family == Family::Unix,
            Test::Transport(transports) => term.negated != transports.contains(&table.transport),
            Test::Proto(families) => {
                let own = families.contains(&table.family);
                if term.negated {
                    // A listener in the inet6 table is always PROTO=inet6.
                    !own
                } else {
                    // A dual-stack or mapped listener in the inet6 table
                    // satisfies inet.
                    own || (table.family == Family::Inet6 && families.contains(&Family::Inet))
                }
            }
            _ => true,
        })
    }
}

/// The expression tree.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    Clause(Clause),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

impl Expr {
    /// A clause holds over the set when some endpoint satisfies it.
    fn truth(&self, endpoints: &[Facts<'_>]) -> Truth {
        match self {
            Expr::Clause(clause) => Truth::any(endpoints.iter().map(|f| clause.truth(f))),
            Expr::And(all) => Truth::all(all.iter().map(|e| e.truth(endpoints))),
            Expr::Or(any) => Truth::any(any.iter().map(|e| e.truth(endpoints))),
        }
    }

    fn clauses(&self) -> Box<dyn Iterator<Item = &Clause> + '_> {
        match self {
            Expr::Clause(clause) => Box::new(std::iter::once(clause)),
            Expr::And(list) | Expr::Or(list) => Box::new(list.iter().flat_map(Expr::clauses)),
        }
    }

    fn terms(&self) -> impl Iterator<Item = &Term> + '_ {
        self.clauses().flat_map(|c| &c.terms)
    }
}

/// A parsed condition.
#[derive(Debug, Clone)]
pub struct Condition {
    /// The text for messages: trimmed, control characters escaped.
    shown: String,
    expr: Expr,
}

impl Condition {
    /// Parses Upstart `start on` syntax; the error names the position and
    /// what was expected. A term that can never hold is an error too.
    pub fn parse(text: &str) -> Result<Condition, ConditionError> {
        let expr = parse::parse(text)?;
        Ok(Condition {
            shown: shown(text),
            expr,
        })
    }

    /// The condition as messages show it: the user's text, trimmed, on one
    /// line (line breaks and tabs as spaces), other control characters
    /// escaped so that it cannot forge a line of a log.
    pub fn text(&self) -> &str {
        &self.shown
    }

    /// The three-valued answer over the current set of endpoints.
    pub fn evaluate(&self, endpoints: &[Facts<'_>]) -> Truth {
        self.expr.truth(endpoints)
    }

    /// Whether the condition holds (is known to be true): what `wait`
    /// waits for.
    pub fn holds(&self, endpoints: &[Facts<'_>]) -> bool {
        self.evaluate(endpoints) == Truth::Yes
    }

    /// Whether the condition is known not to hold: what `wait --gone` waits
    /// for. Not the same as `!holds`: an answer that depends on an unknown
    /// fact is neither.
    pub fn fails(&self, endpoints: &[Facts<'_>]) -> bool {
        self.evaluate(endpoints) == Truth::No
    }

    /// Whether this endpoint satisfies at least one `socket` clause: the
    /// filter of `list CONDITION` and `watch CONDITION`.
    pub fn selects(&self, facts: &Facts<'_>) -> bool {
        self.expr.clauses().any(|c| c.truth(facts) == Truth::Yes)
    }

    /// The kernel tables that could satisfy the condition: the only ones
    /// worth asking for.
    pub fn tables(&self) -> Vec<Table> {
        Table::ALL
            .into_iter()
            .filter(|&t| self.expr.clauses().any(|c| c.may_match(t)))
            .collect()
    }

    /// Whether a term names `PID` or `COMM`, which need the processes behind
    /// the endpoints.
    pub fn uses_processes(&self) -> bool {
        self.expr
            .terms()
            .any(|t| matches!(t.test.field(), Field::Pid | Field::Comm))
    }

    /// Whether some term's answer could depend on V6ONLY: `V6ONLY` terms,
    /// `PROTO` terms that accept inet, IPv4 `ADDR` addresses and blocks.
    /// Where V6ONLY is only assumed (/proc reads the system default), the
    /// caller says so.
    pub fn depends_on_v6only(&self) -> bool {
        self.expr.terms().any(|t| t.test.depends_on_v6only())
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

/// The text of a condition for messages (see [`Condition::text`]).
fn shown(text: &str) -> String {
    let one_line: String = text
        .trim()
        .chars()
        .map(|c| {
            if matches!(c, '\n' | '\r' | '\t') {
                ' '
            } else {
                c
            }
        })
        .collect();
    crate::quote::escape_controls(&one_line).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::Transport;

    fn endpoint(transport: Transport, addr: &str, port: u16) -> Endpoint {
        Endpoint::inet(transport, addr.parse().unwrap(), port)
    }

    fn facts(endpoint: &Endpoint, v6only: Option<bool>) -> Facts<'_> {
        Facts {
            endpoint,
            v6only,
            owner: OwnerFact::Absent,
            path_current: Truth::Yes,
            trusted: true,
        }
    }

    #[test]
    fn unix_endpoints_match_through_the_keys_they_have() {
        use crate::endpoint::UnixName;
        let e = Endpoint::unix(Transport::Stream, UnixName::path(b"/run/app.sock"));
        let all = [facts(&e, None)];
        assert!(holds("socket PROTO=unix SOCKET_PATH=/run/app.sock", &all));
        assert!(holds("socket unix", &all));
        assert!(holds(
            "socket SOCKET_PATH=/run/*.sock TRANSPORT=stream",
            &all
        ));
        assert!(holds("socket TRANSPORT=stream", &all));
        assert!(!holds("socket PROTO=inet", &all));
        assert!(!holds("socket PORT!=80", &all), "no port: false");
        assert!(!holds("socket ADDR!=127.0.0.1", &all));
        assert!(!holds("socket SOCKET_PATH=@app.sock", &all));
        let stale = [Facts {
            path_current: Truth::No,
            ..facts(&e, None)
        }];
        assert!(!holds("socket SOCKET_PATH=/run/app.sock", &stale));
        assert!(holds("socket PROTO=unix", &stale), "it still listens");
        let forged = [Facts {
            trusted: false,
            ..facts(&e, None)
        }];
        assert_eq!(evaluate("socket PROTO=unix", &forged), Truth::Unknown);
        assert!(!Condition::parse("socket unix").unwrap().selects(&forged[0]));
        let inet = endpoint(Transport::Tcp, "0.0.0.0", 80);
        assert!(!holds("socket SOCKET_PATH=*", &[facts(&inet, None)]));
        let tables = Condition::parse("socket PORT=80").unwrap().tables();
        assert!(tables.iter().all(|t| t.family != Family::Unix));
        let tables = Condition::parse("socket SOCKET_PATH=/x").unwrap().tables();
        assert_eq!(tables, Table::UNIX);
    }

    fn evaluate(condition: &str, endpoints: &[Facts<'_>]) -> Truth {
        Condition::parse(condition).unwrap().evaluate(endpoints)
    }

    fn holds(condition: &str, endpoints: &[Facts<'_>]) -> bool {
        Condition::parse(condition).unwrap().holds(endpoints)
    }

    #[test]
    fn positional_and_named_terms() {
        let e = endpoint(Transport::Tcp, "0.0.0.0", 80);
        let all = [facts(&e, None)];
        assert!(holds("socket", &all));
        assert!(holds("socket inet 80", &all));
        assert!(holds(
            "ready on socket PROTO=inet PORT=80 ADDR=0.0.0.0 TRANSPORT=tcp",
            &all
        ));
        assert!(holds("socket inet 80 0.0.0.0 tcp", &all));
        assert!(!holds("socket inet6", &all));
        assert!(!holds("socket inet 81", &all));
        assert!(!holds("socket inet 80 0.0.0.0 udp", &all));
        assert!(holds("socket PORT=8*", &all));
        assert!(holds("socket PORT=79-81", &all));
        assert!(!holds("socket PORT=81-90", &all));
        assert!(holds("socket TRANSPORT!=udp", &all));
        assert!(!holds("socket PORT!=80", &all));
    }

    #[test]
    fn negation_is_false_when_the_key_is_absent() {
        let e = endpoint(Transport::Tcp, "127.0.0.1", 80);
        let all = [facts(&e, None)];
        assert!(!holds("socket COMM=nginx", &all));
        assert!(!holds("socket COMM!=nginx", &all), "COMM unknown");
        assert!(!holds("socket V6ONLY!=1", &all), "no v6only for IPv4");
        let with_comm = [Facts {
            owner: OwnerFact::Known {
                pid: 42,
                comm: "my server",
            },
            ..facts(&e, None)
        }];
        assert!(holds("socket COMM!=nginx", &with_comm));
        assert!(holds(r#"socket COMM="my server" PID=42"#, &with_comm));
        assert!(holds("socket COMM=my*", &with_comm));
    }

    #[test]
    fn wildcard_reaches_concrete_addresses_of_its_family() {
        let any4 = endpoint(Transport::Tcp, "0.0.0.0", 80);
        let all = [facts(&any4, None)];
        assert!(holds("socket ADDR=127.0.0.1", &all));
        assert!(holds("socket ADDR=10.0.0.0/8", &all));
        assert!(!holds("socket ADDR=::1", &all));
        assert!(!holds("socket ADDR!=0.0.0.0", &all));
        // Negation includes reachability: 127.0.0.1 reaches this listener.
        assert!(!holds("socket ADDR!=127.0.0.1", &all));
        assert!(holds("socket ADDR!=::1", &all));
        let lo = endpoint(Transport::Tcp, "127.0.0.1", 80);
        let all = [facts(&lo, None)];
        assert!(holds("socket ADDR=127.0.0.0/8", &all));
        assert!(!holds("socket ADDR=10.0.0.0/8", &all));
        assert!(
            !holds("socket ADDR=0.0.0.0", &all),
            "a concrete listener is not a wildcard"
        );
        assert!(holds("socket ADDR=127.*", &all));
    }

    #[test]
    fn dual_stack_listener_satisfies_ipv4_terms() {
        let any6 = endpoint(Transport::Tcp, "::", 3000);
        let dual = [facts(&any6, Some(false))];
        assert!(holds("socket PROTO=inet PORT=3000", &dual));
        assert!(holds("socket inet 3000 127.0.0.1", &dual));
        assert!(holds("socket PROTO=inet ADDR=127.0.0.0/8", &dual));
        assert!(holds("socket PROTO=inet6 ADDR=::1", &dual));
        assert!(!holds("socket PROTO!=inet6", &dual));
        let v6only = [facts(&any6, Some(true))];
        assert!(!holds("socket PROTO=inet PORT=3000", &v6only));
        assert!(!holds("socket ADDR=127.0.0.1", &v6only));
        assert!(holds("socket ADDR=::1", &v6only));
        let lo6 = endpoint(Transport::Tcp, "::1", 3000);
        assert!(!holds("socket PROTO=inet", &[facts(&lo6, Some(false))]));
    }

    #[test]
    fn v4_mapped_listener_satisfies_its_ipv4_address() {
        let mapped = endpoint(Transport::Tcp, "::ffff:127.0.0.1", 7000);
        let all = [facts(&mapped, Some(false))];
        assert!(holds("socket PROTO=inet PORT=7000", &all));
        assert!(holds("socket ADDR=127.0.0.1", &all));
        assert!(holds("socket inet 7000 127.0.0.0/8", &all));
        assert!(holds("socket ADDR=127.*", &all));
        assert!(holds("socket PROTO=inet6 ADDR=::ffff:127.0.0.1", &all));
        assert!(!holds("socket ADDR=127.0.0.2", &all));
        assert!(!holds("socket ADDR=10.0.0.0/8", &all));
    }

    #[test]
    fn and_or_over_the_set() {
        let a = endpoint(Transport::Tcp, "0.0.0.0", 80);
        let b = endpoint(Transport::Udp, "127.0.0.1", 53);
        let both = [facts(&a, None), facts(&b, None)];
        let only_a = [facts(&a, None)];
        let text = "socket PORT=80 and socket TRANSPORT=udp PORT=53";
        assert!(holds(text, &both));
        assert!(!holds(text, &only_a));
        assert!(holds("socket PORT=53 or socket PORT=80", &only_a));
        assert!(holds(
            "(socket PORT=1 or socket PORT=80) and (socket PORT=53 or socket PORT=2)",
            &both
        ));
        assert!(
            !holds("socket PORT=80 TRANSPORT=udp", &both),
            "one endpoint must match every term"
        );
        assert!(!holds("socket", &[]));
    }

    #[test]
    fn selects_by_any_clause() {
        let condition = Condition::parse("socket PORT=80 and socket PORT=53").unwrap();
        let a = endpoint(Transport::Tcp, "0.0.0.0", 80);
        let c = endpoint(Transport::Tcp, "0.0.0.0", 22);
        assert!(condition.selects(&facts(&a, None)));
        assert!(!condition.selects(&facts(&c, None)));
    }

    #[test]
    fn negation_is_exactly_the_negation_where_the_key_is_present() {
        let any6 = endpoint(Transport::Tcp, "::", 3000);
        let dual = [facts(&any6, Some(false))];
        assert!(holds("socket PROTO=inet", &dual));
        assert!(
            !holds("socket PROTO!=inet", &dual),
            "a dual-stack :: is inet"
        );
        let any4 = endpoint(Transport::Tcp, "0.0.0.0", 80);
        let wildcard = [facts(&any4, None)];
        assert!(holds("socket ADDR=127.0.0.1", &wildcard));
        assert!(!holds("socket ADDR!=127.0.0.1", &wildcard));

        let endpoints = [
            endpoint(Transport::Tcp, "0.0.0.0", 80),
            endpoint(Transport::Tcp, "127.0.0.1", 80),
            endpoint(Transport::Udp, "::", 53),
            endpoint(Transport::Tcp, "::1", 8080),
            endpoint(Transport::Tcp, "::ffff:127.0.0.1", 7000),
            endpoint(Transport::Tcp, "::ffff:0.0.0.0", 7001),
        ];
        let terms = [
            "PROTO=inet",
            "PROTO=inet6",
            "PROTO=inet*",
            "PORT=80",
            "PORT=8*",
            "PORT=50-60",
            "ADDR=127.0.0.1",
            "ADDR=::ffff:127.0.0.1",
            "ADDR=0.0.0.0",
            "ADDR=::",
            "ADDR=::1",
            "ADDR=127.0.0.0/8",
            "ADDR=fd00::/8",
            "ADDR=127.*",
            "TRANSPORT=udp",
            "V6ONLY=1",
        ];
        for e in &endpoints {
            for v6only in [Some(false), Some(true)] {
                let v6only = (e.family() == Family::Inet6).then_some(v6only).flatten();
                let all = [facts(e, v6only)];
                for term in terms {
                    let positive = evaluate(&format!("socket {term}"), &all);
                    let negated =
                        evaluate(&format!("socket {}", term.replacen('=', "!=", 1)), &all);
                    let present = !(term.starts_with("V6ONLY") && e.family() == Family::Inet);
                    let expected = if present { positive.not() } else { Truth::No };
                    assert_eq!(negated, expected, "{term} on {e} (v6only {v6only:?})");
                }
            }
        }
    }

    #[test]
    fn mapped_addresses_are_ipv4_both_ways() {
        let mapped_any = endpoint(Transport::Tcp, "::ffff:0.0.0.0", 80);
        let all = [facts(&mapped_any, Some(false))];
        assert!(holds("socket ADDR=127.0.0.1", &all), "the IPv4 wildcard");
        assert!(holds("socket ADDR=0.0.0.0", &all));
        assert!(holds("socket PROTO=inet", &all));
        assert!(!holds("socket ADDR=::1", &all));
        assert!(
            holds("socket ADDR=0.0.0.*", &all),
            "a glob sees the IPv4 form"
        );
        for listener in ["127.0.0.1", "0.0.0.0"] {
            let e = endpoint(Transport::Tcp, listener, 80);
            let all = [facts(&e, None)];
            assert!(holds("socket ADDR=::ffff:127.0.0.1", &all), "{listener}");
            assert!(
                holds("socket ADDR=::ffff:127.0.0.0/104", &all),
                "{listener}"
            );
            assert!(!holds("socket ADDR=::ffff:127.0.0.2", &all) || listener == "0.0.0.0");
        }
    }

    #[test]
    fn globs_match_the_address_as_written() {
        let any4 = endpoint(Transport::Tcp, "0.0.0.0", 80);
        let all = [facts(&any4, None)];
        assert!(
            !holds("socket ADDR=127.*", &all),
            "no reachability for globs"
        );
        assert!(holds("socket ADDR=0.*", &all));
        assert!(holds("socket ADDR=127.0.0.0/8", &all), "a block reaches it");
        let lo6 = endpoint(Transport::Tcp, "::1", 80);
        assert!(holds("socket ADDR=::?", &[facts(&lo6, Some(true))]));
    }

    #[test]
    fn numbers_compare_as_numbers() {
        let e = endpoint(Transport::Tcp, "127.0.0.1", 80);
        let init = [Facts {
            owner: OwnerFact::Known {
                pid: 1,
                comm: "init",
            },
            ..facts(&e, None)
        }];
        for condition in [
            "socket PORT=080",
            "socket PORT=0080-0080",
            "socket inet 00080",
            "socket PID=01",
            "socket PID=1",
            "socket PORT=8?",
        ] {
            assert!(holds(condition, &init), "{condition}");
        }
        assert!(!holds("socket PORT!=080", &init));
        assert!(!holds("socket PID=10", &init));
    }

    #[test]
    fn unknown_owners_neither_hold_nor_fail() {
        let e = endpoint(Transport::Tcp, "0.0.0.0", 80);
        let unknown = [Facts {
            owner: OwnerFact::Unknown,
            ..facts(&e, None)
        }];
        let cases = [
            ("socket PORT=80 COMM=python3", Truth::Unknown),
            ("socket PORT=80 COMM!=python3", Truth::Unknown),
            ("socket PORT=80 PID=1", Truth::Unknown),
            ("socket PORT=81 COMM=python3", Truth::No),
            ("socket COMM=python3 PORT=81", Truth::No),
            ("socket PORT=80 or socket COMM=python3", Truth::Yes),
            ("socket PORT=81 or socket COMM=python3", Truth::Unknown),
            ("socket PORT=81 and socket COMM=python3", Truth::No),
            ("socket PORT=80 and socket COMM=python3", Truth::Unknown),
            ("socket PORT=80", Truth::Yes),
        ];
        for (condition, expected) in cases {
            assert_eq!(evaluate(condition, &unknown), expected, "{condition}");
        }
        let condition = Condition::parse("socket PORT=80 COMM=python3").unwrap();
        assert!(!condition.holds(&unknown), "not ready");
        assert!(!condition.fails(&unknown), "not gone either");
        assert!(!condition.selects(&unknown[0]));
        // Several endpoints: one known match decides.
        let other = endpoint(Transport::Tcp, "0.0.0.0", 81);
        let mixed = [
            unknown[0],
            Facts {
                owner: OwnerFact::Known {
                    pid: 7,
                    comm: "python3",
                },
                ..facts(&other, None)
            },
        ];
        assert_eq!(evaluate("socket COMM=python3", &mixed), Truth::Yes);
        assert_eq!(evaluate("socket COMM=nginx", &mixed), Truth::Unknown);
        // An absent owner is absent: both forms are false.
        let absent = [facts(&e, None)];
        assert!(
            Condition::parse("socket COMM=python3")
                .unwrap()
                .fails(&absent)
        );
        assert!(
            Condition::parse("socket COMM!=python3")
                .unwrap()
                .fails(&absent)
        );
    }

    #[test]
    fn unknown_v6only_leaves_ipv4_reach_unknown() {
        let any6 = endpoint(Transport::Tcp, "::", 3000);
        let all = [facts(&any6, None)];
        assert_eq!(evaluate("socket PROTO=inet", &all), Truth::Unknown);
        assert_eq!(evaluate("socket ADDR=127.0.0.1", &all), Truth::Unknown);
        assert_eq!(evaluate("socket V6ONLY=1", &all), Truth::Unknown);
        assert_eq!(evaluate("socket PROTO=inet6", &all), Truth::Yes);
        assert_eq!(evaluate("socket ADDR=::1", &all), Truth::Yes);
    }

    #[test]
    fn kleene_logic() {
        use Truth::*;
        let values = [Yes, No, Unknown];
        for a in values {
            for b in values {
                let and = Truth::all([a, b]);
                let or = Truth::any([a, b]);
                let expected_and = if a == No || b == No {
                    No
                } else if a == Yes && b == Yes {
                    Yes
                } else {
                    Unknown
                };
                let expected_or = if a == Yes || b == Yes {
                    Yes
                } else if a == No && b == No {
                    No
                } else {
                    Unknown
                };
                assert_eq!(and, expected_and, "{a:?} and {b:?}");
                assert_eq!(or, expected_or, "{a:?} or {b:?}");
            }
        }
        assert_eq!(Truth::any([]), No, "no endpoint");
        assert_eq!(Truth::all([]), Yes, "a clause without terms");
    }

    #[test]
    fn what_depends_on_v6only() {
        let depends = |text: &str| Condition::parse(text).unwrap().depends_on_v6only();
        assert!(depends("socket PROTO=inet"));
        assert!(depends("socket inet 80"));
        assert!(depends("socket PROTO!=inet"));
        assert!(depends("socket PROTO=inet*"));
        assert!(depends("socket ADDR=127.0.0.1"));
        assert!(depends("socket ADDR=::ffff:127.0.0.1"));
        assert!(depends("socket ADDR=10.0.0.0/8"));
        assert!(depends("socket V6ONLY=0"));
        assert!(depends("socket PORT=1 or socket PROTO=inet"));
        assert!(!depends("socket PROTO=inet6"));
        assert!(!depends("socket ADDR=::1"));
        assert!(!depends("socket ADDR=127.*"));
        assert!(!depends("socket PORT=80 TRANSPORT=tcp"));
    }

    #[test]
    fn messages_show_the_condition_on_one_safe_line() {
        let condition =
            Condition::parse("  (socket PORT=1\n\tor socket COMM=\"a\x1bb\")  ").unwrap();
        assert_eq!(
            condition.text(),
            r#"(socket PORT=1  or socket COMM="a\x1bb")"#
        );
        let raw = Condition::parse("socket COMM=\"a\u{1b}[2Jb\"").unwrap();
        assert_eq!(raw.to_string(), r#"socket COMM="a\x1b[2Jb""#);
    }

    #[test]
    fn tables_asked_for() {
        let tables = |text: &str| -> Vec<String> {
            Condition::parse(text)
                .unwrap()
                .tables()
                .iter()
                .map(|t| t.to_string())
                .collect()
        };
        assert_eq!(
            tables("socket"),
            [
                "tcp",
                "tcp6",
                "udp",
                "udp6",
                "unix stream",
                "unix seqpacket",
                "unix dgram"
            ]
        );
        assert_eq!(tables("socket PORT=80"), ["tcp", "tcp6", "udp", "udp6"]);
        assert_eq!(
            tables("socket PROTO=unix"),
            Table::UNIX.map(|t| t.to_string())
        );
        assert_eq!(tables("socket TRANSPORT=stream"), ["unix stream"]);
        assert_eq!(tables("socket TRANSPORT=tcp"), ["tcp", "tcp6"]);
        assert_eq!(tables("socket PROTO=inet6 TRANSPORT=udp"), ["udp6"]);
        assert_eq!(
            tables("socket PROTO=inet TRANSPORT=tcp"),
            ["tcp", "tcp6"],
            "dual-stack"
        );
        assert_eq!(tables("socket PROTO=inet* TRANSPORT!=tcp"), ["udp", "udp6"]);
        assert_eq!(
            tables("socket TRANSPORT=tcp or socket inet6 TRANSPORT=udp"),
            ["tcp", "tcp6", "udp6"]
        );
        assert_eq!(tables("socket TRANSPORT=u*"), ["udp", "udp6"]);
    }

    #[test]
    fn processes_are_needed_only_for_pid_and_comm() {
        assert!(!Condition::parse("socket PORT=80").unwrap().uses_processes());
        assert!(
            Condition::parse("socket PORT=80 COMM=nginx")
                .unwrap()
                .uses_processes()
        );
        assert!(
            Condition::parse("socket or socket PID!=1")
                .unwrap()
                .uses_processes()
        );
    }
}
