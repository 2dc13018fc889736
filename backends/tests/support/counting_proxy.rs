//! A plain-HTTP reverse proxy on 127.0.0.1 that records the method and target (path and
//! query) of every request it forwards to a real server: what the server received, and so
//! what a provider would bill, seen from outside cairn.
//!
//! It can also swallow the answer to one chosen request after the server has fully received
//! it, and cut the connection: a request that counts (the server did the work) whose client
//! saw only a broken connection, which is what a retry has to cope with.
//!
//! It parses just enough HTTP/1.1 to find request boundaries on a keep-alive connection
//! (the request line, headers, a `Content-Length` body); answers flow back untouched. The
//! SDK sends no chunked bodies to S3 here (every body has a known length), and a request
//! that had one would fail the test loudly rather than be miscounted.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// One request as the server received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// `GET`, `PUT`, ...
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// Whether the proxy swallowed its answer.
    pub cut: bool,
}

impl Seen {
    /// The class S3 bills this request in, named as cairn's request counts name it: LIST is
    /// a GET on the bucket with `list-type`, POST bills like PUT, DELETE (a multipart abort
    /// included) is its own, GET and HEAD are the cheap ones.
    pub fn s3_class(&self) -> &'static str {
        let query = self.target.split_once('?').map_or("", |(_, q)| q);
        match self.method.as_str() {
            "GET"
                if query.split('&').any(|kv| {
                    kv.starts_with("list-type=") || kv == "versions" || kv.starts_with("versions=")
                }) =>
            {
                "list"
            }
            "GET" => "get",
            "HEAD" => "head",
            "PUT" | "POST" => "put",
            "DELETE" => "delete",
            other => panic!("unexpected method {other} in {self:?}"),
        }
    }
}

type Matcher = Box<dyn Fn(&str, &str) -> bool + Send>;

/// The request whose answer is to be swallowed: the `nth` one matching from now.
struct Fault {
    matches: Matcher,
    nth: usize,
}

#[derive(Default)]
struct State {
    seen: Mutex<Vec<Seen>>,
    fault: Mutex<Option<Fault>>,
    stop: AtomicBool,
    /// Bodies that were not plain `Content-Length` ones (must stay empty).
    unparsed: Mutex<Vec<String>>,
}

/// A running proxy; stops accepting when dropped.
pub struct CountingProxy {
    addr: SocketAddr,
    state: Arc<State>,
    thread: Option<JoinHandle<()>>,
}

impl CountingProxy {
    /// Forwards a fresh port on 127.0.0.1 to `target`.
    pub fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(State::default());
        let st = state.clone();
        let thread = std::thread::spawn(move || {
            for client in listener.incoming() {
                if st.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                connection(client, server, st.clone());
            }
        });
        Self {
            addr,
            state,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The requests recorded since the last call, in arrival order.
    pub fn take(&self) -> Vec<Seen> {
        let unparsed = self.state.unparsed.lock().expect("lock").clone();
        assert!(
            unparsed.is_empty(),
            "requests the proxy could not frame: {unparsed:?}"
        );
        std::mem::take(&mut *self.state.seen.lock().expect("lock"))
    }

    /// The `nth` request from now (1-based) for which `matches(method, target)` holds is
    /// forwarded whole, and then its answer is swallowed and its connection cut.
    pub fn cut_answer(&self, nth: usize, matches: impl Fn(&str, &str) -> bool + Send + 'static) {
        *self.state.fault.lock().expect("lock") = Some(Fault {
            matches: Box::new(matches),
            nth,
        });
    }

    /// Whether a configured cut is still waiting for its request.
    pub fn cut_pending(&self) -> bool {
        self.state.fault.lock().expect("lock").is_some()
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Whether this request is the one to cut (and, if so, uses the fault up).
fn is_cut(st: &State, method: &str, target: &str) -> bool {
    let mut fault = st.fault.lock().expect("lock");
    let Some(f) = fault.as_mut() else {
        return false;
    };
    if !(f.matches)(method, target) {
        return false;
    }
    f.nth -= 1;
    if f.nth > 0 {
        return false;
    }
    *fault = None;
    true
}

/// Serves one client connection: requests up (parsed and recorded), answers down (raw).
fn connection(client: TcpStream, server: TcpStream, st: Arc<State>) {
    let swallow = Arc::new(AtomicBool::new(false));
    let (Ok(client_down), Ok(server_down)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let sw = swallow.clone();
    std::thread::spawn(move || answers(server_down, client_down, &sw));
    std::thread::spawn(move || requests(client, server, &st, &swallow));
}

fn answers(mut server: TcpStream, mut client: TcpStream, swallow: &AtomicBool) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match server.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // The request to cut was fully sent before the flag was set, so whatever the
        // server says now is its answer to it.
        if swallow.load(Ordering::SeqCst) || client.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
}

fn requests(client: TcpStream, mut server: TcpStream, st: &State, swallow: &AtomicBool) {
    let mut from = BufReader::with_capacity(64 << 10, client);
    loop {
        let mut head = Vec::new();
        let mut line = Vec::new();
        loop {
            line.clear();
            match from.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            head.extend_from_slice(&line);
            if line == b"\r\n" {
                break;
            }
        }
        let text = String::from_utf8_lossy(&head).into_owned();
        let mut words = text.split(' ');
        let method = words.next().unwrap_or("").to_owned();
        let target = words.next().unwrap_or("").to_owned();
        let mut len = 0u64;
        for h in text.lines().skip(1) {
            let lower = h.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
            if lower.starts_with("transfer-encoding:") {
                st.unparsed.lock().expect("lock").push(text.clone());
            }
        }
        let cut = is_cut(st, &method, &target);
        st.seen.lock().expect("lock").push(Seen {
            method,
            target,
            cut,
        });
        if cut && len == 0 {
            swallow.store(true, Ordering::SeqCst);
        }
        if server.write_all(&head).is_err() {
            return;
        }
        // The body, all but its last byte; the flag goes up before the last byte leaves,
        // so the server cannot have answered a cut request yet.
        let mut left = len;
        let mut buf = vec![0u8; 64 << 10];
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let want = if cut && left == want as u64 {
                want - 1
            } else {
                want
            };
            if want == 0 {
                swallow.store(true, Ordering::SeqCst);
                let mut last = [0u8; 1];
                if from.read_exact(&mut last).is_err() || server.write_all(&last).is_err() {
                    return;
                }
                break;
            }
            let n = match from.read(&mut buf[..want]) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if server.write_all(&buf[..n]).is_err() {
                return;
            }
            left -= n as u64;
        }
    }
}
