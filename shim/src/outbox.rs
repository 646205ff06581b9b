//! Delivery of task events to containerd (`Events/Forward` on `TTRPC_ADDRESS`).
//!
//! One ordered queue, one persistent non-blocking connection driven by the event
//! loop, one request in flight at a time, so events arrive in the order they were
//! published. While containerd is unreachable the queue waits and retries with
//! backoff; exits are never dropped. An event containerd *rejects* is retried a few
//! times and then dropped, since repeating a refused request cannot succeed.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
use protobuf::Message;
use protos::ttrpc_events::{Envelope, ForwardRequest};
use protos::Any;
use ttrpc::proto::KeyValue;
use ttrpc::{Code, Request, Response};

use crate::wire::{self, Frame, FrameReader};

const SERVICE: &str = "containerd.services.events.ttrpc.v1.Events";
const METHOD: &str = "Forward";
const NAMESPACE_KEY: &str = "containerd-namespace-ttrpc";
/// Per-request timeout, as the Go shim's publisher uses.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often containerd may refuse an event before we give it up.
const MAX_REFUSALS: u32 = 5;
/// Queue bound; beyond it the oldest non-exit event is dropped.
const MAX_QUEUED: usize = 4096;

struct Event {
    topic: &'static str,
    event: Any,
    timestamp: SystemTime,
    refusals: u32,
}

impl Event {
    fn is_exit(&self) -> bool {
        self.topic == "/tasks/exit" || self.topic == "/tasks/oom"
    }
}

struct Conn {
    stream: UnixStream,
    out: Vec<u8>,
    reader: FrameReader,
    /// Stream id and deadline of the request in flight.
    inflight: Option<(u32, Instant)>,
    connecting: bool,
}

pub struct Outbox {
    path: PathBuf,
    namespace: String,
    queue: VecDeque<Event>,
    conn: Option<Conn>,
    next_stream: u32,
    retry_at: Option<Instant>,
    backoff: Duration,
    delivered: u64,
}

/// What the event loop must change in its epoll registration after a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// No socket any more (deregister it if it was registered).
    None,
    Read,
    ReadWrite,
}

impl Outbox {
    pub fn new(address: &str, namespace: &str) -> Outbox {
        Outbox {
            path: PathBuf::from(crate::socket::path_of(address)),
            namespace: namespace.to_string(),
            queue: VecDeque::new(),
            conn: None,
            next_stream: 1,
            retry_at: None,
            backoff: Duration::from_millis(100),
            delivered: 0,
        }
    }

    /// Queues an event; the caller then calls `pump`.
    pub fn push(&mut self, topic: &'static str, event: Any) {
        if self.queue.len() >= MAX_QUEUED {
            // Never the head (it may be in flight) and never an exit.
            if let Some(i) = self.queue.iter().skip(1).position(|e| !e.is_exit()) {
                let dropped = self.queue.remove(i + 1);
                if let Some(d) = dropped {
                    log::error!("event queue full, dropping {} event", d.topic);
                }
            }
        }
        self.queue.push_back(Event {
            topic,
            event,
            timestamp: SystemTime::now(),
            refusals: 0,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.conn.as_ref().map(|c| c.stream.as_fd())
    }

    /// The earliest instant at which `on_timer` has work to do.
    pub fn deadline(&self) -> Option<Instant> {
        match &self.conn {
            Some(Conn {
                inflight: Some((_, d)), ..
            }) => Some(*d),
            Some(_) => None,
            None if self.queue.is_empty() => None,
            None => self.retry_at,
        }
    }

    fn interest(&self) -> Interest {
        match &self.conn {
            None => Interest::None,
            Some(c) if c.connecting || !c.out.is_empty() => Interest::ReadWrite,
            Some(_) => Interest::Read,
        }
    }

    fn fail(&mut self, why: &str) {
        if self.conn.take().is_some() || self.retry_at.is_none() {
            log::warn!(
                "cannot deliver events to {}: {why}; {} queued, retrying",
                self.path.display(),
                self.queue.len()
            );
        }
        self.retry_at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    fn connect(&mut self) -> io::Result<()> {
        let fd: OwnedFd = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        let addr = UnixAddr::new(&self.path)?;
        let connecting = match connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr) {
            Ok(()) => false,
            Err(nix::errno::Errno::EINPROGRESS) | Err(nix::errno::Errno::EAGAIN) => true,
            Err(e) => return Err(e.into()),
        };
        self.conn = Some(Conn {
            stream: UnixStream::from(fd),
            out: Vec::new(),
            reader: FrameReader::default(),
            inflight: None,
            connecting,
        });
        Ok(())
    }

    fn encode_head(&mut self) -> Option<Vec<u8>> {
        let ev = self.queue.front()?;
        let mut envelope = Envelope::new();
        envelope.timestamp = protobuf::MessageField::some(protos::time::from_system(ev.timestamp));
        envelope.namespace = self.namespace.clone();
        envelope.topic = ev.topic.to_string();
        envelope.event = protobuf::MessageField::some(ev.event.clone());
        let mut fwd = ForwardRequest::new();
        fwd.envelope = protobuf::MessageField::some(envelope);
        let mut req = Request::new();
        req.service = SERVICE.to_string();
        req.method = METHOD.to_string();
        req.payload = fwd.write_to_bytes().ok()?;
        req.timeout_nano = CALL_TIMEOUT.as_nanos() as i64;
        let mut kv = KeyValue::new();
        kv.key = NAMESPACE_KEY.to_string();
        kv.value = self.namespace.clone();
        req.metadata.push(kv);
        req.write_to_bytes().ok()
    }

    /// Makes progress: connects, sends the head of the queue, flushes output.
    /// Returns the epoll interest the socket now needs.
    pub fn pump(&mut self) -> Interest {
        loop {
            if self.queue.is_empty() {
                break;
            }
            if self.conn.is_none() {
                if self.retry_at.is_some_and(|t| Instant::now() < t) {
                    break;
                }
                if let Err(e) = self.connect() {
                    self.fail(&e.to_string());
                    break;
                }
            }
            let conn = self.conn.as_mut().expect("connected above");
            if conn.connecting {
                break;
            }
            if conn.inflight.is_none() {
                let stream = self.next_stream;
                self.next_stream = self.next_stream.wrapping_add(2);
                let Some(body) = self.encode_head() else {
                    log::error!("cannot encode event; dropping it");
                    self.queue.pop_front();
                    continue;
                };
                let conn = self.conn.as_mut().expect("connected above");
                wire::push_frame(&mut conn.out, stream, wire::TYPE_REQUEST, &body);
                conn.inflight = Some((stream, Instant::now() + CALL_TIMEOUT));
            }
            let conn = self.conn.as_mut().expect("connected above");
            match flush(&mut conn.stream, &mut conn.out) {
                Ok(()) => {}
                Err(e) => self.fail(&format!("write: {e}")),
            }
            break;
        }
        self.interest()
    }

    /// The socket is readable and/or writable.
    pub fn on_ready(&mut self) -> Interest {
        let Some(conn) = self.conn.as_mut() else {
            return Interest::None;
        };
        if conn.connecting {
            match conn.stream.take_error() {
                Ok(None) => conn.connecting = false,
                Ok(Some(e)) | Err(e) => {
                    self.fail(&format!("connect: {e}"));
                    return self.interest();
                }
            }
        }
        let mut buf = [0u8; 4096];
        loop {
            let conn = self.conn.as_mut().expect("checked above");
            match conn.stream.read(&mut buf) {
                Ok(0) => {
                    self.fail("connection closed");
                    return self.interest();
                }
                Ok(n) => conn.reader.feed(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.fail(&format!("read: {e}"));
                    return self.interest();
                }
            }
        }
        while let Some(frame) = self.conn.as_mut().and_then(|c| c.reader.next_frame()) {
            let Frame::Message { header, body } = frame else {
                continue;
            };
            let inflight = self.conn.as_ref().and_then(|c| c.inflight);
            if header.kind != wire::TYPE_RESPONSE || inflight.map(|(s, _)| s) != Some(header.stream) {
                continue;
            }
            if let Some(c) = self.conn.as_mut() {
                c.inflight = None;
            }
            self.on_response(&body);
        }
        self.pump()
    }

    fn on_response(&mut self, body: &[u8]) {
        let status = Response::parse_from_bytes(body)
            .map(|r| {
                r.status
                    .as_ref()
                    .map(|s| (s.code.value(), s.message.clone()))
                    .unwrap_or((0, String::new()))
            })
            .unwrap_or((Code::UNKNOWN as i32, "undecodable response".to_string()));
        if status.0 == Code::OK as i32 {
            self.queue.pop_front();
            self.delivered += 1;
            self.backoff = Duration::from_millis(100);
            self.retry_at = None;
            return;
        }
        let Some(head) = self.queue.front_mut() else {
            return;
        };
        head.refusals += 1;
        if head.refusals >= MAX_REFUSALS {
            log::error!(
                "containerd refused {} event {} times ({}); dropping it",
                head.topic,
                head.refusals,
                status.1
            );
            self.queue.pop_front();
        } else {
            log::warn!("containerd refused {} event: {}", head.topic, status.1);
            // Retry after a pause, on a fresh connection.
            self.fail(&status.1);
        }
    }

    /// Called when the loop's clock passes `deadline()`.
    pub fn on_timer(&mut self, now: Instant) -> Interest {
        if let Some(Conn {
            inflight: Some((_, d)), ..
        }) = &self.conn
        {
            if now >= *d {
                self.fail("request timed out");
            }
        }
        self.pump()
    }
}

fn flush(stream: &mut UnixStream, out: &mut Vec<u8>) -> io::Result<()> {
    while !out.is_empty() {
        match stream.write(out) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                out.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::sync::mpsc;
    use std::thread;

    /// A stand-in for containerd's ttrpc events service. `answer` decides the
    /// status for each received topic; `close_after` drops the connection after
    /// that many requests (once).
    fn fake_containerd(
        path: PathBuf,
        answer: fn(&str) -> i32,
        close_after: Option<usize>,
    ) -> (mpsc::Receiver<(String, String, String)>, thread::JoinHandle<()>) {
        let listener = UnixListener::bind(&path).unwrap();
        let (tx, rx) = mpsc::channel();
        let handle = thread::spawn(move || {
            let mut served = 0usize;
            let mut closed_once = false;
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = FrameReader::default();
                let mut buf = [0u8; 4096];
                loop {
                    let n = match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    reader.feed(&buf[..n]);
                    while let Some(Frame::Message { header, body }) = reader.next_frame() {
                        let req = Request::parse_from_bytes(&body).unwrap();
                        let ns = req
                            .metadata
                            .iter()
                            .find(|kv| kv.key == NAMESPACE_KEY)
                            .map(|kv| kv.value.clone())
                            .unwrap_or_default();
                        let fwd = ForwardRequest::parse_from_bytes(&req.payload).unwrap();
                        let topic = fwd.envelope.topic.clone();
                        served += 1;
                        if close_after == Some(served) && !closed_once {
                            closed_once = true;
                            break;
                        }
                        let code = answer(&topic);
                        let mut out = Vec::new();
                        let result = if code == 0 {
                            Ok(Vec::new())
                        } else {
                            Err((Code::INVALID_ARGUMENT, "refused".to_string()))
                        };
                        wire::push_response(&mut out, header.stream, result);
                        let _ = stream.write_all(&out);
                        if tx.send((format!("{}.{}", req.service, req.method), ns, topic)).is_err() {
                            return;
                        }
                    }
                    if closed_once && served == close_after.unwrap_or(0) {
                        break;
                    }
                }
            }
        });
        (rx, handle)
    }

    fn event(n: u32) -> Any {
        protos::any::pack_bytes("containerd.events.TaskStart", vec![0x10, n as u8])
    }

    /// Drives the outbox like the event loop does, until `done` or a deadline.
    fn drive(outbox: &mut Outbox, mut done: impl FnMut(&Outbox) -> bool) {
        let until = Instant::now() + Duration::from_secs(20);
        while !done(outbox) {
            assert!(Instant::now() < until, "outbox made no progress");
            outbox.pump();
            outbox.on_ready();
            if let Some(d) = outbox.deadline() {
                if Instant::now() >= d {
                    outbox.on_timer(Instant::now());
                }
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// A socket path in a directory of its own, removed when the test ends
    /// (passed or not).
    struct TempSocket {
        dir: PathBuf,
        path: PathBuf,
    }

    impl Drop for TempSocket {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn temp_socket(name: &str) -> TempSocket {
        let dir = std::env::temp_dir().join(format!("outbox-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.sock.ttrpc");
        TempSocket { dir, path }
    }

    #[test]
    fn delivers_in_order_with_namespace_metadata() {
        let sock = temp_socket("order");
        let path = sock.path.clone();
        let (rx, _h) = fake_containerd(path.clone(), |_| 0, None);
        let mut outbox = Outbox::new(&format!("unix://{}", path.display()), "ns1");
        for i in 0..50 {
            outbox.push(if i % 2 == 0 { "/tasks/start" } else { "/tasks/exit" }, event(i));
        }
        drive(&mut outbox, |o| o.is_empty());
        let got: Vec<_> = rx.try_iter().collect();
        assert_eq!(got.len(), 50);
        for (i, (method, ns, topic)) in got.iter().enumerate() {
            assert_eq!(method, "containerd.services.events.ttrpc.v1.Events.Forward");
            assert_eq!(ns, "ns1");
            assert_eq!(topic, if i % 2 == 0 { "/tasks/start" } else { "/tasks/exit" });
        }
        assert_eq!(outbox.delivered(), 50);
    }

    #[test]
    fn waits_for_containerd_and_then_delivers_everything() {
        let sock = temp_socket("late");
        let path = sock.path.clone();
        let mut outbox = Outbox::new(path.to_str().unwrap(), "ns");
        outbox.push("/tasks/exit", event(1));
        outbox.push("/tasks/exit", event(2));
        // Nobody listens yet: several attempts fail, nothing is lost.
        let until = Instant::now() + Duration::from_millis(400);
        while Instant::now() < until {
            outbox.pump();
            thread::sleep(Duration::from_millis(10));
        }
        assert!(!outbox.is_empty());
        let (rx, _h) = fake_containerd(path, |_| 0, None);
        drive(&mut outbox, |o| o.is_empty());
        let topics: Vec<_> = rx.try_iter().map(|t| t.2).collect();
        assert_eq!(topics, vec!["/tasks/exit", "/tasks/exit"]);
    }

    #[test]
    fn a_dropped_connection_resends_the_event_in_flight() {
        let sock = temp_socket("drop");
        let path = sock.path.clone();
        let (rx, _h) = fake_containerd(path.clone(), |_| 0, Some(2));
        let mut outbox = Outbox::new(path.to_str().unwrap(), "ns");
        for i in 0..4 {
            outbox.push("/tasks/exit", event(i));
        }
        drive(&mut outbox, |o| o.is_empty());
        // The second request's connection died before an answer: it is sent again,
        // and all four arrive in order.
        let acked = rx.try_iter().count();
        assert_eq!(acked, 4);
        assert_eq!(outbox.delivered(), 4);
    }

    #[test]
    fn a_refused_event_is_dropped_but_later_ones_arrive() {
        let sock = temp_socket("refuse");
        let path = sock.path.clone();
        let (rx, _h) = fake_containerd(path.clone(), |t| i32::from(t == "/tasks/paused"), None);
        let mut outbox = Outbox::new(path.to_str().unwrap(), "ns");
        outbox.push("/tasks/paused", event(1));
        outbox.push("/tasks/exit", event(2));
        drive(&mut outbox, |o| o.is_empty());
        let topics: Vec<_> = rx.try_iter().map(|t| t.2).collect();
        assert_eq!(
            topics.iter().filter(|t| *t == "/tasks/paused").count(),
            MAX_REFUSALS as usize
        );
        assert_eq!(topics.last().map(String::as_str), Some("/tasks/exit"));
        assert_eq!(outbox.delivered(), 1);
    }
}
