//! A TCP proxy on 127.0.0.1 that a test can cut: the network between cairn and a real
//! server, dropped on demand mid-transfer without touching the server (which other tests
//! share).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The proxy's shared state.
#[derive(Default)]
struct State {
    /// While set, live connections are cut and new ones refused.
    down: AtomicBool,
    /// Whether the listening socket is open.
    listening: AtomicBool,
    stop: AtomicBool,
    /// Bytes forwarded from the client to the server.
    upstream: AtomicU64,
    live: Mutex<Vec<TcpStream>>,
}

/// A running proxy; stops when dropped.
pub struct Proxy {
    port: u16,
    state: Arc<State>,
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Forwards a fresh port on 127.0.0.1 to `target`.
    pub fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("local addr").port();
        let state = Arc::new(State::default());
        let st = state.clone();
        state.listening.store(true, Ordering::SeqCst);
        let thread = std::thread::spawn(move || accept_loop(listener, port, target, &st));
        Self {
            port,
            state,
            thread: Some(thread),
        }
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Bytes sent through to the server so far.
    pub fn upstream_bytes(&self) -> u64 {
        self.state.upstream.load(Ordering::Relaxed)
    }

    /// Cuts every live connection and refuses new ones (`true`), or lets them through again.
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
        if down {
            let mut live = self.state.live.lock().expect("lock");
            for s in live.drain(..) {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
        // Return only once the port is in the requested state, so the test's next step
        // meets the network it asked for.
        let start = std::time::Instant::now();
        while self.state.listening.load(Ordering::SeqCst) == down
            && !self.state.stop.load(Ordering::SeqCst)
        {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "proxy did not switch"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits (bounded) until at least `n` bytes went upstream.
    pub fn wait_upstream(&self, n: u64, limit: Duration) {
        let start = std::time::Instant::now();
        while self.upstream_bytes() < n {
            assert!(
                start.elapsed() < limit,
                "only {} of {n} bytes went through the proxy in {limit:?}",
                self.upstream_bytes()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        self.set_down(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, port: u16, target: SocketAddr, st: &Arc<State>) {
    let mut listener = Some(listener);
    while !st.stop.load(Ordering::SeqCst) {
        if st.down.load(Ordering::SeqCst) {
            // Closing the listening socket makes new connections fail with ECONNREFUSED,
            // exactly like a server that is gone.
            listener = None;
            st.listening.store(false, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        let l = match &listener {
            Some(l) => l,
            None => match TcpListener::bind(("127.0.0.1", port)) {
                Ok(l) => {
                    st.listening.store(true, Ordering::SeqCst);
                    listener.insert(l)
                }
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            },
        };
        l.set_nonblocking(true).expect("nonblocking");
        match l.accept() {
            Ok((client, _)) => {
                let _ = client.set_nonblocking(false);
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                let mut live = st.live.lock().expect("lock");
                if let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) {
                    live.push(c2);
                    live.push(s2);
                }
                drop(live);
                pipe(client.try_clone(), server.try_clone(), st.clone(), true);
                pipe(Ok(server), Ok(client), st.clone(), false);
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn pipe(
    from: std::io::Result<TcpStream>,
    to: std::io::Result<TcpStream>,
    st: Arc<State>,
    up: bool,
) {
    let (Ok(mut from), Ok(mut to)) = (from, to) else {
        return;
    };
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if st.down.load(Ordering::SeqCst) || to.write_all(&buf[..n]).is_err() {
                break;
            }
            if up {
                st.upstream.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}
