//! The HTTP side of `sockwatch export --listen`: `GET /metrics`, nothing
//! else, and nothing a client can hold up.
//!
//! A scrape endpoint faces whatever can reach its port, so every client is
//! bounded: its request head must arrive whole within [`Limits::read`] and
//! fit in [`Limits::head`] bytes, a response that cannot be written within
//! [`Limits::write`] is abandoned, bodies are refused, and at most
//! [`Limits::connections`] clients are served at once (more are closed at
//! once). Each client has a thread of its own, so a silent or slow one
//! never delays another's scrape; the accept loop survives every error
//! accept(2) can return (running out of descriptors included) by pausing
//! and going on.
//!
//! Request heads are parsed by `httparse` (hyper's parser). A server crate
//! such as tiny_http was not used: it reads header lines of any length,
//! sets no timeouts on the connections it accepts, and its accept loop ends
//! for good at the first error (EMFILE), which is what an exporter must
//! withstand.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;

/// What a scrape of `/metrics` is answered with.
pub enum Page {
    /// The exposition, and its content type.
    Ready {
        /// `text/plain; version=0.0.4; charset=utf-8`.
        content_type: &'static str,
        /// The metrics.
        body: String,
    },
    /// No answer can be given yet (the socket tables have not all been
    /// read), and why: 503, so that nothing is taken for "nothing listens".
    NotYet(&'static str),
}

/// The bounds on each client.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long the whole request head may take to arrive.
    pub read: Duration,
    /// How long writing the response may take.
    pub write: Duration,
    /// The largest request head, in bytes.
    pub head: usize,
    /// How many clients are served at once.
    pub connections: usize,
}

impl Limits {
    /// Prometheus's default scrape timeout is 10 s; a head of 8 KiB is what
    /// common servers allow; 64 clients at once is far beyond what a few
    /// Prometheus servers need, and small enough for threads.
    pub const DEFAULT: Limits = Limits {
        read: Duration::from_secs(10),
        write: Duration::from_secs(10),
        head: 8 * 1024,
        connections: 64,
    };
}

/// The most header lines a request head may have.
const MAX_HEADERS: usize = 64;

/// The only path served.
const METRICS_PATH: &str = "/metrics";

/// Listens on `addr`: an error names the address and the reason (the port
/// is in use, the address is not this host's).
pub fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).with_context(|| format!("failed to listen on {addr}"))
}

/// Serves `listener` on a thread of its own until the process ends, each
/// scrape of `/metrics` answered with what `page` gives then.
pub fn serve(
    listener: TcpListener,
    limits: Limits,
    page: impl Fn() -> Page + Send + Sync + 'static,
) -> io::Result<thread::JoinHandle<()>> {
    let page = Arc::new(page);
    thread::Builder::new()
        .name("export-http".into())
        .spawn(move || accept_loop(&listener, limits, &page))
}

/// Counts a client in; counts it out when dropped, however its thread ends.
struct Admitted(Arc<AtomicUsize>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn accept_loop<P>(listener: &TcpListener, limits: Limits, page: &Arc<P>)
where
    P: Fn() -> Page + Send + Sync + 'static,
{
    let active = Arc::new(AtomicUsize::new(0));
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors or memory: pause so that clients
                // finish and free them, rather than spin. Anything else
                // (a client that gave up, a signal) concerns one client.
                let pause = match e.raw_os_error() {
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => 100,
                    _ => 1,
                };
                thread::sleep(Duration::from_millis(pause));
                continue;
            }
        };
        if active.fetch_add(1, Ordering::AcqRel) >= limits.connections {
            active.fetch_sub(1, Ordering::AcqRel);
            // Too many at once: closing is the answer.
            continue;
        }
        let admitted = Admitted(Arc::clone(&active));
        let page = Arc::clone(page);
        // A thread that cannot be made drops the client (and the count).
        let _ = thread::Builder::new()
            .name("export-client".into())
            .spawn(move || {
                let _admitted = admitted;
                serve_client(stream, limits, &*page);
            });
    }
}

/// A response: status, extra header lines, body.
struct Response {
    status: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    body: String,
    /// HEAD: the headers of the answer to GET, without its body.
    head_only: bool,
}

impl Response {
    fn text(status: &'static str, body: impl Into<String>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type", "text/plain; charset=utf-8")],
            body: body.into(),
            head_only: false,
        }
    }
}

/// Reads one request head within the limits, answers it, and closes.
fn serve_client(mut stream: TcpStream, limits: Limits, page: &dyn Fn() -> Page) {
    let deadline = Instant::now() + limits.read;
    let _ = stream.set_write_timeout(Some(limits.write));
    let mut head = vec![0u8; limits.head];
    let mut len = 0;
    let response = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break Response::text("408 Request Timeout", "the request took too long\n");
        }
        match stream.read(&mut head[len..]) {
            // The client left before asking anything.
            Ok(0) => return,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                break Response::text("408 Request Timeout", "the request took too long\n");
            }
            Err(_) => return,
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&head[..len]) {
            Ok(httparse::Status::Complete(_)) => break route(&request, page),
            Ok(httparse::Status::Partial) if len < head.len() => {}
            Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
                break Response::text(
                    "431 Request Header Fields Too Large",
                    format!(
                        "a request head may have at most {} bytes and {MAX_HEADERS} lines\n",
                        limits.head
                    ),
                );
            }
            Err(e) => break Response::text("400 Bad Request", format!("{e}\n")),
        }
    };
    if write_response(&mut stream, &response).is_ok() {
        linger(&mut stream);
    }
}

/// After the answer: tells the client it is whole, then reads (and drops)
/// what the client still sends until it closes, for at most a second and
/// 64 KiB. Closing a socket with unread bytes sends a reset, which can
/// destroy an answer before the client has read it (a refused body).
fn linger(stream: &mut TcpStream) {
    if stream.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut sink = [0u8; 4096];
    let mut left: usize = 64 * 1024;
    while left > 0 {
        let wait = deadline.saturating_duration_since(Instant::now());
        if wait.is_zero() || stream.set_read_timeout(Some(wait)).is_err() {
            return;
        }
        match stream.read(&mut sink) {
            Ok(0) => return,
            Ok(n) => left = left.saturating_sub(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// The answer to a whole request head.
fn route(request: &httparse::Request<'_, '_>, page: &dyn Fn() -> Page) -> Response {
    let path = request.path.unwrap_or("/");
    let path = path.split_once('?').map_or(path, |(path, _)| path);
    if path != METRICS_PATH {
        return Response::text(
            "404 Not Found",
            format!("not found: sockwatch serves {METRICS_PATH}\n"),
        );
    }
    let method = request.method.unwrap_or("");
    if method != "GET" && method != "HEAD" {
        let mut response = Response::text(
            "405 Method Not Allowed",
            format!("{METRICS_PATH} answers GET and HEAD\n"),
        );
        response.headers.push(("Allow", "GET, HEAD"));
        return response;
    }
    let has_body = request.headers.iter().any(|header| {
        header.name.eq_ignore_ascii_case("transfer-encoding")
            || (header.name.eq_ignore_ascii_case("content-length")
                && header.value.trim_ascii() != b"0")
    });
    if has_body {
        return Response::text("413 Content Too Large", "requests may not have a body\n");
    }
    let mut response = match page() {
        Page::Ready { content_type, body } => Response {
            status: "200 OK",
            headers: vec![("Content-Type", content_type)],
            body,
            head_only: false,
        },
        Page::NotYet(why) => Response::text("503 Service Unavailable", format!("{why}\n")),
    };
    response.head_only = method == "HEAD";
    response
}

fn write_response(stream: &mut TcpStream, response: &Response) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {}\r\n", response.status);
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        response.body.len()
    ));
    let mut out = head.into_bytes();
    if !response.head_only {
        out.extend_from_slice(response.body.as_bytes());
    }
    stream.write_all(&out)?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server on a port of 127.0.0.1 the kernel picks, answering `body`.
    fn server(limits: Limits, body: &'static str) -> SocketAddr {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        serve(listener, limits, move || Page::Ready {
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: body.to_owned(),
        })
        .unwrap();
        addr
    }

    /// Sends `request` and reads the answer, as much as came before the
    /// server closed.
    fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let _ = stream.write_all(request);
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        String::from_utf8(answer).unwrap()
    }

    fn status(answer: &str) -> &str {
        answer.lines().next().unwrap_or("")
    }

    #[test]
    fn metrics_other_paths_and_methods() {
        let addr = server(Limits::DEFAULT, "up 1\n");
        let ok = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(status(&ok), "HTTP/1.1 200 OK", "{ok}");
        assert!(
            ok.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"),
            "{ok}"
        );
        assert!(ok.ends_with("\r\n\r\nup 1\n"), "{ok}");
        let query = exchange(addr, b"GET /metrics?x=1 HTTP/1.0\r\n\r\n");
        assert_eq!(status(&query), "HTTP/1.1 200 OK");
        let head = exchange(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(
            head.ends_with("Content-Length: 5\r\nConnection: close\r\n\r\n"),
            "{head}"
        );
        let missing = exchange(addr, b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(status(&missing), "HTTP/1.1 404 Not Found");
        let post = exchange(addr, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(status(&post), "HTTP/1.1 405 Method Not Allowed");
        assert!(post.contains("\r\nAllow: GET, HEAD\r\n"), "{post}");
        let body = exchange(
            addr,
            b"GET /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
        );
        assert_eq!(status(&body), "HTTP/1.1 413 Content Too Large");
        let garbage = exchange(addr, b"\x01\x02 nonsense\r\n\r\n");
        assert_eq!(status(&garbage), "HTTP/1.1 400 Bad Request");
    }

    #[test]
    fn request_heads_are_bounded_in_size_and_time() {
        let limits = Limits {
            read: Duration::from_millis(300),
            head: 256,
            ..Limits::DEFAULT
        };
        let addr = server(limits, "up 1\n");
        let long = format!(
            "GET /metrics HTTP/1.1\r\nX-Long: {}\r\n\r\n",
            "a".repeat(300)
        );
        let answer = exchange(addr, long.as_bytes());
        assert_eq!(
            status(&answer),
            "HTTP/1.1 431 Request Header Fields Too Large"
        );
        // A head that never ends, sent a byte at a time.
        let mut slow = TcpStream::connect(addr).unwrap();
        let began = Instant::now();
        for byte in b"GET /metrics HTTP/1.1\r\n" {
            if slow.write_all(&[*byte]).is_err() {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        slow.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut answer = String::new();
        let _ = slow.read_to_string(&mut answer);
        assert_eq!(status(&answer), "HTTP/1.1 408 Request Timeout", "{answer}");
        assert!(began.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn clients_beyond_the_limit_are_closed_and_others_served() {
        let limits = Limits {
            connections: 2,
            ..Limits::DEFAULT
        };
        let addr = server(limits, "up 1\n");
        let _silent: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
        // Both places are held by silent clients: the next is closed at
        // once, without an answer.
        let turned_away = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
        assert_eq!(turned_away, "");
        drop(_silent);
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let answer = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
            if status(&answer) == "HTTP/1.1 200 OK" {
                break;
            }
            assert!(Instant::now() < until, "no place freed: {answer:?}");
            thread::sleep(Duration::from_millis(10));
        }
    }
}
