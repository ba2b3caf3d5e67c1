//! The connection an exchange talks through: a pooled [`Conn`], plus, after a cluster's `ASK`
//! redirection, an `ASKING` sent before every command.
//!
//! `ASKING` lets only the next command through on the importing node, so a pipeline of two
//! commands on a key being migrated (GET + PTTL) needs one before each. Its `+OK` replies are
//! checked and taken out, so an exchange reads the replies of its own commands only.

use super::conn::{Conn, ConnError, ConnErrorKind, Reply};
use std::time::Instant;

pub struct Wire<'c> {
    conn: &'c mut Conn,
    asking: bool,
}

impl<'c> Wire<'c> {
    pub fn new(conn: &'c mut Conn, asking: bool) -> Wire<'c> {
        Wire { conn, asking }
    }

    /// Queues a command (preceded by ASKING after an ASK redirection).
    pub fn append(&mut self, args: &[&[u8]]) -> Result<(), ConnError> {
        if self.asking {
            self.conn.append(&[b"ASKING"])?;
        }
        self.conn.append(args)
    }

    /// Sends what was appended and reads the replies of the commands, in order.
    pub fn finish(&mut self, deadline: Instant) -> Result<Vec<Reply>, ConnError> {
        let replies = self.conn.finish(deadline)?;
        if !self.asking {
            return Ok(replies);
        }
        let mut out = Vec::with_capacity(replies.len() / 2);
        let mut replies = replies.into_iter();
        while let Some(asking) = replies.next() {
            if !matches!(&asking, Reply::Status(s) if s == b"OK") {
                self.conn.mark_broken();
                return Err(ConnError {
                    kind: ConnErrorKind::Protocol,
                    message: format!("{} answered ASKING with {asking:?}", self.conn.peer()),
                });
            }
            out.extend(replies.next());
        }
        Ok(out)
    }

    /// Sends one command and reads its reply.
    pub fn command(&mut self, args: &[&[u8]], deadline: Instant) -> Result<Reply, ConnError> {
        if !self.asking {
            return self.conn.command(args, deadline);
        }
        self.append(args)?;
        let mut replies = self.finish(deadline)?;
        replies.pop().ok_or_else(|| ConnError {
            kind: ConnErrorKind::Protocol,
            message: format!("{} sent no reply", self.conn.peer()),
        })
    }

    /// See `Conn::expect_values`.
    pub fn expect_values(&mut self, n: usize) {
        self.conn.expect_values(n);
    }

    /// See `Conn::expect_keys`.
    pub fn expect_keys(&mut self, most: usize, each: usize) -> usize {
        self.conn.expect_keys(most, each)
    }
}
