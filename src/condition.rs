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
//! Reachability makes conditions say what a client would find: a wildcard
//! listener (`0.0.0.0`, `::`) satisfies a concrete `ADDR` of its family, and a
//! dual-stack `::` listener (v6only off) satisfies IPv4 terms too — Node.js
//! and many servers listen on `::` by default, and a user who waits for
//! `PROTO=inet PORT=3000` must not hang.
//!
//! The parser lives in `condition/parse.rs`; this file holds the model and
//! the matching.

mod glob;
mod parse;

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::endpoint::{Endpoint, Family, Table};

pub use parse::ConditionError;

/// The facts a condition is evaluated on, for one endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The endpoint.
    pub endpoint: &'a Endpoint,
    /// `IPV6_V6ONLY`, already resolved by the caller (`None` for IPv4).
    pub v6only: Option<bool>,
    /// What is known of the process holding it.
    pub owner: OwnerFact<'a>,
}

/// What is known of the process behind an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerFact<'a> {
    /// Not looked up, or no visible process holds it: PID and COMM are
    /// absent.
    Absent,
    /// The process holding it.
    Known {
        /// Its pid.
        pid: u32,
        /// Its command name.
        comm: &'a str,
    },
    /// It could not be seen (another user's process): unknown, not absent.
    Unknown,
}

impl Facts<'_> {
    /// The IPv4 address of an IPv4-mapped IPv6 listener.
    fn mapped_v4(&self) -> Option<std::net::Ipv4Addr> {
        match self.endpoint.addr {
            IpAddr::V6(v6) if !v6.is_unspecified() => v6.to_ipv4_mapped(),
            _ => None,
        }
    }

    /// A `::` listener that also accepts IPv4.
    fn dual_stack(&self) -> bool {
        self.endpoint.family() == Family::Inet6
            && self.endpoint.is_wildcard()
            && self.v6only == Some(false)
    }
}

/// A key of a term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key {
    Proto,
    Port,
    Addr,
    Transport,
    V6only,
    Pid,
    Comm,
}

impl Key {
    /// Every key, in the order error messages list them.
    pub(crate) const ALL: [Key; 7] = [
        Key::Proto,
        Key::Port,
        Key::Addr,
        Key::Transport,
        Key::V6only,
        Key::Pid,
        Key::Comm,
    ];
    /// What positional values stand for, in order.
    pub(crate) const POSITIONAL: [Key; 4] = [Key::Proto, Key::Port, Key::Addr, Key::Transport];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Key::Proto => "PROTO",
            Key::Port => "PORT",
            Key::Addr => "ADDR",
            Key::Transport => "TRANSPORT",
            Key::V6only => "V6ONLY",
            Key::Pid => "PID",
            Key::Comm => "COMM",
        }
    }
}

/// What a term's value matches.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Pattern {
    /// fnmatch(3) glob (a plain word is a glob without metacharacters).
    Glob(String),
    /// `PORT=A-B`, inclusive.
    Range(u16, u16),
    /// `ADDR=` a concrete address.
    Ip(IpAddr),
    /// `ADDR=` a CIDR block.
    Net(IpNet),
}

impl Pattern {
    /// Plain matching of a field's text, without reachability.
    fn matches_text(&self, text: &str) -> bool {
        match self {
            Pattern::Glob(glob) => glob::matches(glob, text),
            Pattern::Range(low, high) => text
                .parse::<u16>()
                .is_ok_and(|p| (*low..=*high).contains(&p)),
            Pattern::Ip(ip) => text.parse::<IpAddr>().is_ok_and(|a| a == *ip),
            Pattern::Net(net) => text.parse::<IpAddr>().is_ok_and(|a| net.contains(&a)),
        }
    }
}

/// `KEY=VALUE` or `KEY!=VALUE`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Term {
    pub(crate) key: Key,
    pub(crate) negated: bool,
    pub(crate) pattern: Pattern,
}

impl Term {
    /// Whether `facts` satisfy the term. A negated term is false when the
    /// key is absent (Upstart's rule), and compares plainly: reachability
    /// widens what a positive term accepts, but `ADDR!=127.0.0.1` means "not
    /// bound to 127.0.0.1", which a wildcard listener is not.
    fn matches(&self, facts: &Facts<'_>) -> bool {
        let Some(text) = field(self.key, facts) else {
            return false;
        };
        if self.negated {
            return !self.pattern.matches_text(&text);
        }
        self.pattern.matches_text(&text) || self.reaches(facts)
    }

    /// Reachability: what a client addressing the term's value would reach.
    /// An IPv4-mapped listener (`::ffff:127.0.0.1`, what Java binds on a
    /// dual-stack host) takes IPv4 clients of that address only.
    fn reaches(&self, facts: &Facts<'_>) -> bool {
        let endpoint = facts.endpoint;
        let mapped = facts.mapped_v4();
        match (&self.key, &self.pattern) {
            (Key::Proto, pattern) => {
                (facts.dual_stack() || mapped.is_some())
                    && pattern.matches_text(Family::Inet.as_str())
            }
            (Key::Addr, Pattern::Ip(ip)) => {
                (endpoint.is_wildcard() && Family::of(ip) == endpoint.family())
                    || (facts.dual_stack() && ip.is_ipv4())
                    || mapped.is_some_and(|v4| *ip == IpAddr::V4(v4))
            }
            (Key::Addr, Pattern::Net(net)) => {
                let net_family = Family::of(&net.addr());
                (endpoint.is_wildcard() && net_family == endpoint.family())
                    || (facts.dual_stack() && net_family == Family::Inet)
                    || mapped.is_some_and(|v4| net.contains(&IpAddr::V4(v4)))
            }
            (Key::Addr, Pattern::Glob(glob)) => {
                mapped.is_some_and(|v4| glob::matches(glob, &v4.to_string()))
            }
            _ => false,
        }
    }
}

/// The text of a field, or `None` when it is absent.
fn field(key: Key, facts: &Facts<'_>) -> Option<String> {
    let endpoint = facts.endpoint;
    Some(match key {
        Key::Proto => endpoint.family().as_str().to_owned(),
        Key::Port => endpoint.port.to_string(),
        Key::Addr => endpoint.addr.to_string(),
        Key::Transport => endpoint.transport.as_str().to_owned(),
        Key::V6only => u8::from(facts.v6only?).to_string(),
        Key::Pid => match facts.owner {
            OwnerFact::Known { pid, .. } => pid.to_string(),
            _ => return None,
        },
        Key::Comm => match facts.owner {
            OwnerFact::Known { comm, .. } => comm.to_owned(),
            _ => return None,
        },
    })
}

/// `socket TERM...`: satisfied by one endpoint that matches every term.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Clause {
    pub(crate) terms: Vec<Term>,
}

impl Clause {
    fn matches(&self, facts: &Facts<'_>) -> bool {
        self.terms.iter().all(|t| t.matches(facts))
    }

    /// Whether some endpoint of `table` could satisfy the clause. Exact for
    /// TRANSPORT and PROTO, which every endpoint has; other keys never rule a
    /// table out.
    fn may_match(&self, table: Table) -> bool {
        self.terms.iter().all(|term| match term.key {
            Key::Transport => term.negated != term.pattern.matches_text(table.transport.as_str()),
            Key::Proto => {
                let own = term.pattern.matches_text(table.family.as_str());
                if term.negated {
                    !own
                } else {
                    // A dual-stack `::` in the inet6 table satisfies inet.
                    own || (table.family == Family::Inet6
                        && term.pattern.matches_text(Family::Inet.as_str()))
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
    fn holds(&self, endpoints: &[Facts<'_>]) -> bool {
        match self {
            Expr::Clause(clause) => endpoints.iter().any(|f| clause.matches(f)),
            Expr::And(all) => all.iter().all(|e| e.holds(endpoints)),
            Expr::Or(any) => any.iter().any(|e| e.holds(endpoints)),
        }
    }

    fn clauses(&self) -> Box<dyn Iterator<Item = &Clause> + '_> {
        match self {
            Expr::Clause(clause) => Box::new(std::iter::once(clause)),
            Expr::And(list) | Expr::Or(list) => Box::new(list.iter().flat_map(Expr::clauses)),
        }
    }
}

/// A parsed condition.
#[derive(Debug, Clone)]
pub struct Condition {
    text: String,
    expr: Expr,
}

impl Condition {
    /// Parses Upstart `start on` syntax; the error names the position and
    /// what was expected.
    pub fn parse(text: &str) -> Result<Condition, ConditionError> {
        let expr = parse::parse(text)?;
        Ok(Condition {
            text: text.trim().to_owned(),
            expr,
        })
    }

    /// The text as the user gave it, trimmed.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether the condition holds over the current set of endpoints.
    pub fn holds(&self, endpoints: &[Facts<'_>]) -> bool {
        self.expr.holds(endpoints)
    }

    /// Whether this endpoint satisfies at least one `socket` clause: the
    /// filter of `list CONDITION` and `watch CONDITION`.
    pub fn selects(&self, facts: &Facts<'_>) -> bool {
        self.expr.clauses().any(|c| c.matches(facts))
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
            .clauses()
            .flat_map(|c| &c.terms)
            .any(|t| matches!(t.key, Key::Pid | Key::Comm))
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::Transport;

    fn endpoint(transport: Transport, addr: &str, port: u16) -> Endpoint {
        Endpoint {
            transport,
            addr: addr.parse().unwrap(),
            port,
        }
    }

    fn facts(endpoint: &Endpoint, v6only: Option<bool>) -> Facts<'_> {
        Facts {
            endpoint,
            v6only,
            owner: OwnerFact::Absent,
        }
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
        assert!(
            !holds("socket ADDR!=0.0.0.0", &all),
            "negation compares plainly"
        );
        assert!(holds("socket ADDR!=127.0.0.1", &all));
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
    fn tables_asked_for() {
        let tables = |text: &str| -> Vec<String> {
            Condition::parse(text)
                .unwrap()
                .tables()
                .iter()
                .map(|t| t.to_string())
                .collect()
        };
        assert_eq!(tables("socket"), ["tcp", "tcp6", "udp", "udp6"]);
        assert_eq!(tables("socket TRANSPORT=tcp"), ["tcp", "tcp6"]);
        assert_eq!(tables("socket PROTO=inet6 TRANSPORT=udp"), ["udp6"]);
        assert_eq!(
            tables("socket PROTO=inet TRANSPORT=tcp"),
            ["tcp", "tcp6"],
            "dual-stack"
        );
        assert_eq!(tables("socket TRANSPORT!=tcp"), ["udp", "udp6"]);
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
