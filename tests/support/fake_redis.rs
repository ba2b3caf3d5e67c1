//! A fake "Redis" on a loopback port that answers whatever the test tells it to.

use std::io::Read;
use std::net::{TcpListener, TcpStream};

/// Listens on a free loopback port; `answer` gets each accepted connection on its own thread.
pub fn fake_server(answer: fn(TcpStream)) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || answer(conn));
        }
    });
    port
}

/// Reads whatever the client sent; false once it closed the connection.
pub fn read_some(c: &mut TcpStream) -> bool {
    let mut buf = [0u8; 65536];
    matches!(c.read(&mut buf), Ok(n) if n > 0)
}
