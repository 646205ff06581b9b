//! A background `ctr events` watcher.
//!
//! ctr prints one line per event: `<timestamp> <namespace> <topic> <json>`. ctr decodes the
//! event's `Any` by its type URL; one it cannot decode (e.g. a `type.googleapis.com/` prefix)
//! is skipped with a warning on stderr, so seeing an event here proves its type URL is right.
//! The watcher restarts `ctr events` when it ends (e.g. containerd was restarted); call
//! [`EventWatcher::wait_subscribed`] after a restart before relying on it.

use crate::command;
use crate::daemon::Daemon;
use crate::reaper::{self, Spawned};
use crate::util;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One line of `ctr events`.
#[derive(Debug, Clone)]
pub struct Event {
    /// Position in the order of arrival.
    pub seq: usize,
    pub namespace: String,
    pub topic: String,
    /// The decoded event as JSON (`Value::Null` if ctr printed none).
    pub body: Value,
    pub line: String,
}

impl Event {
    /// `container_id` of task events, `id` of container events.
    pub fn container_id(&self) -> Option<&str> {
        self.body
            .get("container_id")
            .or_else(|| self.body.get("id"))
            .and_then(Value::as_str)
    }

    /// A numeric field, 0 when absent (Go's JSON encoding omits zero values).
    pub fn u64_field(&self, name: &str) -> u64 {
        self.body.get(name).and_then(Value::as_u64).unwrap_or(0)
    }

    pub fn str_field(&self, name: &str) -> &str {
        self.body.get(name).and_then(Value::as_str).unwrap_or("")
    }
}

/// Parses a `ctr events` line; `None` for anything else.
pub fn parse_line(line: &str, seq: usize) -> Option<Event> {
    // The timestamp contains spaces; the topic is the first word starting with '/', the
    // namespace the word before it, and the JSON everything after it.
    let mut prev: Option<&str> = None;
    let mut offset = 0;
    for word in line.split(' ') {
        let start = offset;
        offset += word.len() + 1;
        if word.starts_with('/') && prev.is_some_and(|p| !p.is_empty()) {
            let rest = line.get(start + word.len()..).unwrap_or("").trim();
            let body = if rest.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(rest).ok()?
            };
            return Some(Event {
                seq,
                namespace: prev?.to_string(),
                topic: word.to_string(),
                body,
                line: line.to_string(),
            });
        }
        prev = Some(word);
    }
    None
}

#[derive(Default)]
struct Log {
    events: Vec<Event>,
    /// ctr's stderr lines (warnings about undecodable events land here).
    stderr: Vec<String>,
    /// Lines on stdout that did not parse.
    garbage: Vec<String>,
    /// How many times `ctr events` was started.
    starts: usize,
}

struct Shared {
    log: Mutex<Log>,
    cv: Condvar,
    stop: AtomicBool,
    daemon_alive: Arc<AtomicBool>,
    /// pid of the running `ctr events`, cleared (under this lock) before it is reaped.
    current: Mutex<Option<i32>>,
}

impl Shared {
    fn log(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn running(&self) -> bool {
        !self.stop.load(Ordering::SeqCst) && self.daemon_alive.load(Ordering::SeqCst)
    }
}

/// Collects `ctr events` of one daemon in the background.
pub struct EventWatcher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    base_args: Vec<OsString>,
    ns: String,
}

impl EventWatcher {
    /// Starts watching; prefer [`Daemon::events`], which also waits until subscribed.
    pub fn start(d: &Daemon) -> EventWatcher {
        let shared = Arc::new(Shared {
            log: Mutex::new(Log::default()),
            cv: Condvar::new(),
            stop: AtomicBool::new(false),
            daemon_alive: d.alive.clone(),
            current: Mutex::new(None),
        });
        let base_args = d.ctr_base_args();
        let s = shared.clone();
        let args = base_args.clone();
        let thread = std::thread::Builder::new()
            .name("e2e-ctr-events".into())
            .spawn(move || watch_loop(s, &args))
            .expect("spawn events thread");
        EventWatcher {
            shared,
            thread: Some(thread),
            base_args,
            ns: d.ns().to_string(),
        }
    }

    /// Blocks until `ctr events` demonstrably receives events: it labels the namespace (which
    /// publishes `/namespaces/update`) until that event shows up.
    pub fn wait_subscribed(&self, timeout: Duration) {
        static PROBE: AtomicU32 = AtomicU32::new(0);
        let deadline = Instant::now() + timeout;
        loop {
            let n = PROBE.fetch_add(1, Ordering::Relaxed);
            let value = format!("p{n}");
            let mut cmd = Command::new(util::ctr_bin());
            cmd.args(&self.base_args)
                .args(["namespaces", "label", &self.ns])
                .arg(format!("e2e.probe={value}"));
            let out = command::run(&mut cmd, None, Duration::from_secs(10)).expect("run ctr");
            if out.code() == Some(0) {
                let seen = self.try_wait_for(Duration::from_millis(500), |e| {
                    e.topic == "/namespaces/update"
                        && e.body.pointer("/labels/e2e.probe").and_then(Value::as_str) == Some(&value)
                });
                if seen.is_some() {
                    return;
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "ctr events did not get subscribed within {timeout:?}\n{}",
                    self.describe()
                );
            }
        }
    }

    /// Waits for the first event (in arrival order, including earlier ones) matching `pred`.
    pub fn try_wait_for(&self, timeout: Duration, pred: impl Fn(&Event) -> bool) -> Option<Event> {
        let deadline = Instant::now() + timeout;
        let mut log = self.shared.log();
        loop {
            if let Some(e) = log.events.iter().find(|e| pred(e)) {
                return Some(e.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            log = self
                .shared
                .cv
                .wait_timeout(log, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Like [`EventWatcher::try_wait_for`], but panics with everything seen when it times out.
    pub fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&Event) -> bool) -> Event {
        self.try_wait_for(timeout, pred)
            .unwrap_or_else(|| panic!("no event {what} within {timeout:?}\n{}", self.describe()))
    }

    /// Waits for `topic` of container `id`.
    pub fn wait_topic(&self, topic: &str, id: &str, timeout: Duration) -> Event {
        self.wait_for(&format!("{topic} for {id}"), timeout, |e| {
            e.topic == topic && e.container_id() == Some(id)
        })
    }

    /// Everything received so far.
    pub fn events(&self) -> Vec<Event> {
        self.shared.log().events.clone()
    }

    /// Task and container events of container `id`, in arrival order.
    pub fn for_container(&self, id: &str) -> Vec<Event> {
        self.events()
            .into_iter()
            .filter(|e| e.container_id() == Some(id) && !e.topic.starts_with("/namespaces/"))
            .collect()
    }

    /// ctr's stderr lines so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.shared.log().stderr.clone()
    }

    /// All events, stderr and unparsed lines, for failure messages.
    pub fn describe(&self) -> String {
        let log = self.shared.log();
        let mut s = format!(
            "--- ctr events ({} started, {} events) ---\n",
            log.starts,
            log.events.len()
        );
        for e in &log.events {
            let _ = writeln!(s, "    {}", util::head(&e.line, 400));
        }
        for l in &log.garbage {
            let _ = writeln!(s, "    unparsed: {l}");
        }
        for l in &log.stderr {
            let _ = writeln!(s, "    stderr: {l}");
        }
        s
    }
}

impl Drop for EventWatcher {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(pid) = *self.shared.current.lock().unwrap_or_else(|e| e.into_inner()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn watch_loop(s: Arc<Shared>, base_args: &[OsString]) {
    while s.running() {
        let mut cmd = Command::new(util::ctr_bin());
        cmd.args(base_args)
            .args(["--connect-timeout", "1s", "events"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child: Spawned = {
            let mut cur = s.current.lock().unwrap_or_else(|e| e.into_inner());
            if !s.running() {
                return;
            }
            match reaper::spawn(&mut cmd) {
                Ok(c) => {
                    *cur = Some(c.pid());
                    c
                }
                Err(e) => {
                    s.log().stderr.push(format!("cannot start ctr events: {e}"));
                    return;
                }
            }
        };
        s.log().starts += 1;
        let stderr = child.take_stderr().map(|p| {
            let s = s.clone();
            std::thread::spawn(move || {
                for l in BufReader::new(p).lines() {
                    let Ok(l) = l else { break };
                    s.log().stderr.push(l);
                }
            })
        });
        if let Some(out) = child.take_stdout() {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let mut log = s.log();
                let seq = log.events.len();
                match parse_line(&line, seq) {
                    Some(e) => log.events.push(e),
                    None => log.garbage.push(line),
                }
                drop(log);
                s.cv.notify_all();
            }
        }
        *s.current.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if child.wait_timeout(Duration::from_secs(5)).ok().flatten().is_none() {
            child.kill_and_wait();
        }
        if let Some(t) = stderr {
            let _ = t.join();
        }
        s.cv.notify_all();
        if s.running() {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ctr_events_lines() {
        let l = r#"2026-11-22 09:28:14.559993552 +0000 UTC protodoc /tasks/exit {"container_id":"c1","id":"c1","pid":19936,"exit_status":3}"#;
        let e = parse_line(l, 7).expect("parse");
        assert_eq!(e.seq, 7);
        assert_eq!(e.namespace, "protodoc");
        assert_eq!(e.topic, "/tasks/exit");
        assert_eq!(e.container_id(), Some("c1"));
        assert_eq!(e.u64_field("exit_status"), 3);
        assert_eq!(e.u64_field("nothing"), 0);
        let c = parse_line(r#"2026-11-22 09:28:14 +0000 UTC ns /containers/delete {"id":"c1"}"#, 0).unwrap();
        assert_eq!(c.container_id(), Some("c1"));
        assert!(parse_line("time=x level=warning msg=\"cannot unmarshal\"", 0).is_none());
    }
}
