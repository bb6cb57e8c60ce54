//! Reachability, stated once: would a client addressing X reach this
//! listener?
//!
//! Conditions say what a client would find, not how a socket was bound:
//!
//! - a wildcard listener (`0.0.0.0`, `::`) reaches every address of its
//!   family;
//! - a dual-stack `::` listener (`V6ONLY=0`) also reaches every IPv4 address
//!   (Node.js and many servers bind it by default);
//! - an IPv4-mapped listener (`::ffff:127.0.0.1`, as Java binds on a
//!   dual-stack host) is the IPv4 listener on that address, and
//!   `::ffff:0.0.0.0` is the IPv4 wildcard;
//! - an IPv4-mapped address or block in a condition is the IPv4 one (the
//!   parser rewrites it), so `ADDR=::ffff:127.0.0.1` is `ADDR=127.0.0.1`.
//!
//! Where a `::` listener's v6only is unknown, whether it takes IPv4 is
//! unknown too, and the answer says so.

use std::net::IpAddr;

use ipnet::IpNet;

use super::{Facts, Truth};

/// The address a listener is bound to as clients see it: an IPv4-mapped
/// IPv6 address is its IPv4 address.
pub(super) fn bound(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Whether an IPv6 wildcard listener also takes IPv4 clients.
fn takes_ipv4(facts: &Facts<'_>) -> Truth {
    match facts.v6only {
        Some(v6only) => Truth::from(!v6only),
        None => Truth::Unknown,
    }
}

/// Whether a client addressing `ip` (an IPv4-mapped one already made IPv4)
/// reaches the listener. An unspecified `ip` asks whether the listener
/// reaches every address of that family.
pub(super) fn reaches_addr(facts: &Facts<'_>, own: IpAddr, ip: IpAddr) -> Truth {
    match (bound(own), ip) {
        (IpAddr::V4(own), IpAddr::V4(ip)) => Truth::from(own.is_unspecified() || own == ip),
        (IpAddr::V6(own), IpAddr::V6(ip)) => Truth::from(own.is_unspecified() || own == ip),
        (IpAddr::V6(own), IpAddr::V4(_)) if own.is_unspecified() => takes_ipv4(facts),
        _ => Truth::No,
    }
}

/// Whether the listener reaches some address of `net` (a block inside
/// `::ffff:0:0/96` already made IPv4; an IPv6 block stands for its IPv6
/// addresses).
pub(super) fn reaches_net(facts: &Facts<'_>, own: IpAddr, net: &IpNet) -> Truth {
    match (bound(own), net) {
        (IpAddr::V4(own), IpNet::V4(net)) => {
            Truth::from(own.is_unspecified() || net.contains(&own))
        }
        (IpAddr::V6(own), IpNet::V6(net)) => {
            Truth::from(own.is_unspecified() || net.contains(&own))
        }
        (IpAddr::V6(own), IpNet::V4(_)) if own.is_unspecified() => takes_ipv4(facts),
        _ => Truth::No,
    }
}

/// Whether the listener reaches some IPv4 address: what `PROTO=inet` asks
/// of a listener in the IPv6 tables.
pub(super) fn reaches_ipv4(facts: &Facts<'_>) -> Truth {
    let Some(own) = facts.endpoint.ip() else {
        return Truth::No; // a unix endpoint
    };
    match bound(own) {
        IpAddr::V4(_) => Truth::Yes,
        IpAddr::V6(own) if own.is_unspecified() => takes_ipv4(facts),
        IpAddr::V6(_) => Truth::No,
    }
}

/// An address as a condition means it: IPv4-mapped is IPv4.
pub(super) fn canonical_addr(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A block as a condition means it: one inside `::ffff:0:0/96` is the IPv4
/// block it maps.
pub(super) fn canonical_net(net: IpNet) -> IpNet {
    let IpNet::V6(v6) = net else {
        return net;
    };
    match v6.network().to_ipv4_mapped() {
        Some(v4) if v6.prefix_len() >= 96 => IpNet::V4(
            ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).expect("a prefix of at most 32"),
        ),
        _ => net,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::condition::OwnerFact;
    use crate::endpoint::{Endpoint, Transport};

    /// Whether a client addressing `value` (an address, or a block when it
    /// has a `/`) reaches a TCP listener on `listener`.
    fn reach(listener: &str, v6only: Option<bool>, value: &str) -> Truth {
        let own: IpAddr = listener.parse().unwrap();
        let endpoint = Endpoint::inet(Transport::Tcp, own, 80);
        let facts = Facts {
            endpoint: &endpoint,
            v6only,
            owner: OwnerFact::Absent,
            path_current: Truth::Yes,
            trusted: true,
        };
        match value.parse::<IpNet>() {
            Ok(net) => reaches_net(&facts, own, &canonical_net(net)),
            Err(_) => reaches_addr(&facts, own, canonical_addr(value.parse().unwrap())),
        }
    }

    #[test]
    fn addresses_and_blocks() {
        use Truth::*;
        let cases = [
            ("0.0.0.0", None, "127.0.0.1", Yes),
            ("0.0.0.0", None, "0.0.0.0", Yes),
            ("0.0.0.0", None, "::1", No),
            ("0.0.0.0", None, "::ffff:127.0.0.1", Yes),
            ("127.0.0.1", None, "::ffff:127.0.0.1", Yes),
            ("127.0.0.1", None, "0.0.0.0", No),
            ("127.0.0.1", None, "127.0.0.2", No),
            ("::", Some(false), "127.0.0.1", Yes),
            ("::", Some(false), "0.0.0.0", Yes),
            ("::", Some(true), "127.0.0.1", No),
            ("::", None, "127.0.0.1", Unknown),
            ("::", Some(true), "::1", Yes),
            ("::", Some(true), "::", Yes),
            ("::1", Some(false), "::", No),
            ("::1", Some(false), "127.0.0.1", No),
            ("::ffff:0.0.0.0", Some(false), "127.0.0.1", Yes),
            ("::ffff:0.0.0.0", Some(false), "0.0.0.0", Yes),
            ("::ffff:0.0.0.0", Some(false), "::1", No),
            ("::ffff:127.0.0.1", Some(false), "127.0.0.1", Yes),
            ("::ffff:127.0.0.1", Some(false), "::ffff:127.0.0.1", Yes),
            ("::ffff:127.0.0.1", Some(false), "127.0.0.2", No),
            ("0.0.0.0", None, "127.0.0.0/8", Yes),
            ("127.0.0.1", None, "127.0.0.0/8", Yes),
            ("127.0.0.1", None, "10.0.0.0/8", No),
            ("127.0.0.1", None, "::ffff:127.0.0.0/104", Yes),
            ("127.0.0.1", None, "::/0", No),
            ("::", Some(false), "10.0.0.0/8", Yes),
            ("::", Some(true), "10.0.0.0/8", No),
            ("::", None, "10.0.0.0/8", Unknown),
            ("::", Some(true), "fd00::/8", Yes),
            ("::1", Some(true), "fd00::/8", No),
            ("::ffff:10.1.2.3", Some(false), "10.0.0.0/8", Yes),
            ("::ffff:0.0.0.0", Some(false), "192.168.0.0/16", Yes),
        ];
        for (listener, v6only, value, expected) in cases {
            assert_eq!(
                reach(listener, v6only, value),
                expected,
                "{listener} (v6only {v6only:?}) ~ {value}"
            );
        }
    }

    #[test]
    fn mapped_blocks_are_ipv4() {
        let net = canonical_net("::ffff:10.0.0.0/104".parse().unwrap());
        assert_eq!(net, "10.0.0.0/8".parse::<IpNet>().unwrap());
        let net = canonical_net("::ffff:0:0/96".parse().unwrap());
        assert_eq!(net, "0.0.0.0/0".parse::<IpNet>().unwrap());
        let net = canonical_net("::/0".parse().unwrap());
        assert_eq!(net, "::/0".parse::<IpNet>().unwrap());
    }
}
