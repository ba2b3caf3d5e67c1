//! `MOVED` and `ASK` error replies: where a cluster node says a slot is served.

use super::slots::SLOTS;
use crate::redis::url::parse_host_port;

/// A redirection a node answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// `ASK`: this one command goes to `host:port` (after ASKING); the slot map stays.
    /// Otherwise `MOVED`: the slot now lives at `host:port` for good.
    pub ask: bool,
    pub slot: u16,
    pub host: String,
    pub port: u16,
}

impl Redirect {
    /// Parses an error reply's text; None when it is not a redirection. A malformed one is
    /// None too: it is then an ordinary error reply, counted and returned.
    pub fn parse(error: &str) -> Option<Redirect> {
        let mut words = error.split(' ');
        let ask = match words.next()? {
            "MOVED" => false,
            "ASK" => true,
            _ => return None,
        };
        let slot = words.next()?.parse::<u16>().ok()?;
        if usize::from(slot) >= SLOTS {
            return None;
        }
        let target = words.next()?;
        if words.next().is_some() {
            return None;
        }
        // Redis sends ":port" when it does not know its own address (an unannounced IP):
        // not something to connect to.
        let (host, port) = parse_host_port(target).ok()?;
        Some(Redirect {
            ask,
            slot,
            host,
            port,
        })
    }

    /// `host:port`, the node's name.
    pub fn addr(&self) -> String {
        super::url::host_port(&self.host, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moved_and_ask_parse() {
        let r = Redirect::parse("MOVED 3999 127.0.0.1:6381").unwrap();
        assert_eq!(
            (r.ask, r.slot, r.addr()),
            (false, 3999, "127.0.0.1:6381".into())
        );
        let r = Redirect::parse("ASK 1 [::1]:7000").unwrap();
        assert_eq!((r.ask, r.slot, r.addr()), (true, 1, "[::1]:7000".into()));
    }

    #[test]
    fn anything_else_is_not_a_redirect() {
        for bad in [
            "ERR unknown command",
            "MOVED",
            "MOVED 16384 127.0.0.1:1",
            "MOVED -1 127.0.0.1:1",
            "MOVED 1 :7000",
            "MOVED 1 127.0.0.1:0",
            "MOVED 1 127.0.0.1:7000 extra",
            "ASK x 127.0.0.1:7000",
            "TRYAGAIN Multiple keys request during rehashing of slot",
            "CLUSTERDOWN The cluster is down",
        ] {
            assert_eq!(Redirect::parse(bad), None, "{bad}");
        }
    }
}
