//! A seeded random walk over the Task API of one hand-started shim that serves several
//! containers at once. Each container has its own driver thread: execs that end by themselves,
//! sleep until signalled or die with the init, kills racing natural exits, pauses, State and
//! Pids calls, inits that end early, and containers deleted and created again under the same
//! id. Whatever the interleaving:
//!
//! - no call hangs, and the shim never stops answering;
//! - every process whose Start succeeded is waited for, with a status its ending allows;
//! - State and Delete of a stopped process agree with its Wait;
//! - `/tasks/exit` is published exactly once for it, with that status, and for nothing else;
//! - after the last Delete and Shutdown the shim is gone and nothing is left behind.
//!
//! `E2E_WALK_SEED` replays a walk (the seed is printed); `E2E_WALK_STEPS` lengthens it.

use e2e::events::{Event, EventWatcher};
use e2e::fifo::FifoReader;
use e2e::launch::{connect_pids, create_req, create_task, shutdown_and_wait};
use e2e::requests::{
    close_stdin_req, code_of, delete_req, describe_err, exec_req_in, kill_req, pause_req, pids_req, resume_req,
    start_req, state_req, stats_req, update_req, wait_req, with_terminal,
};
use e2e::shim::{make_bundle, rpc_ctx, HandShim};
use e2e::Daemon;
use protos::task_ttrpc::TaskClient;
use protos::types::Status;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const CONTAINERS: usize = 3;
/// Driver steps per container (each about 20-60 ms), over several incarnations.
const STEPS: usize = 240;
/// The most execs one container has alive at once.
const MAX_LIVE_EXECS: usize = 5;

/// xorshift64*: small, and a seed replays the same choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A process whose Start succeeded.
struct Started {
    container: String,
    /// Exec id; empty for the init.
    exec_id: String,
    pid: u32,
    /// Statuses its ending may give.
    allowed: BTreeSet<u32>,
    /// Whether its own command ends by itself.
    ends_by_itself: bool,
    /// Whether a Kill of ours reached it.
    signalled: bool,
    /// Its stdout fifo (with a terminal: the terminal's output), and the line it prints.
    output: Option<(FifoReader, String)>,
    wait: Option<JoinHandle<Result<u32, String>>>,
    /// Status its Wait returned.
    status: Option<u32>,
}

impl Started {
    fn finished(&self) -> bool {
        self.wait.as_ref().is_none_or(JoinHandle::is_finished)
    }

    fn join(&mut self) -> u32 {
        if let Some(w) = self.wait.take() {
            let got = w.join().expect("waiter thread");
            let status = got.unwrap_or_else(|e| panic!("Wait({}/{}): {e}", self.container, self.exec_id));
            self.status = Some(status);
        }
        self.status.expect("joined")
    }
}

/// One container's driver: its model and its log of calls (printed on failure).
struct Driver {
    id: String,
    bundle: PathBuf,
    /// Where its execs' stdout fifos are made.
    fifo_dir: PathBuf,
    ns: String,
    client: TaskClient,
    rng: Rng,
    log: Vec<String>,
    /// Every process started in any incarnation, for the event check at the end.
    done: Vec<Started>,
    init: Option<Started>,
    /// Execs of this incarnation that were started.
    execs: Vec<Started>,
    /// Execs of this incarnation whose Exec succeeded but not their Start.
    unstarted: Vec<String>,
    init_killed: bool,
    init_short: bool,
    paused: bool,
    next_exec: usize,
    generation: usize,
    /// RPC failures the walk tolerates (races), by call and code.
    tolerated: Arc<Mutex<BTreeMap<String, usize>>>,
}

/// A context for Wait: long enough for any process of the walk to end.
fn wait_ctx(ns: &str) -> ttrpc::context::Context {
    let mut ctx = rpc_ctx(ns);
    ctx.timeout_nano = Duration::from_secs(120).as_nanos() as i64;
    ctx
}

fn spawn_wait(client: &TaskClient, ns: &str, id: &str, exec_id: &str) -> JoinHandle<Result<u32, String>> {
    let (client, ns, req) = (client.clone(), ns.to_string(), wait_req(id, exec_id));
    std::thread::spawn(move || {
        client
            .wait(wait_ctx(&ns), &req)
            .map(|r| r.exit_status)
            .map_err(|e| describe_err(&e))
    })
}

impl Driver {
    fn note(&mut self, what: String) {
        self.log.push(what);
    }

    /// A failed call the walk can explain by a race is counted; a hang, a broken connection or
    /// an internal failure is not.
    fn tolerate(&self, call: &str, err: &ttrpc::Error) {
        match code_of(err) {
            Some(ttrpc::Code::NOT_FOUND | ttrpc::Code::FAILED_PRECONDITION | ttrpc::Code::UNKNOWN) => {
                // Counted by call and message (its ids and numbers left out).
                let message: String = describe_err(err)
                    .replace(&self.id, "<id>")
                    .chars()
                    .map(|c| if c.is_ascii_digit() { '#' } else { c })
                    .collect();
                *self
                    .tolerated
                    .lock()
                    .unwrap()
                    .entry(format!("{call} {message}"))
                    .or_default() += 1;
            }
            _ => panic!(
                "{}: {call} failed with {}\nlast calls:\n{}",
                self.id,
                describe_err(err),
                self.tail()
            ),
        }
    }

    /// A call that failed: noted as `what`, allowed only if a race `excused` it (else the walk
    /// stops here), then counted as `call`.
    fn failed(&mut self, call: &str, what: String, err: &ttrpc::Error, excused: bool) {
        self.note(format!("{what}: {}", describe_err(err)));
        assert!(
            excused,
            "{}: {what} failed while nothing excused it: {}\nlast calls:\n{}",
            self.id,
            describe_err(err),
            self.tail()
        );
        self.tolerate(call, err);
    }

    fn tail(&self) -> String {
        let from = self.log.len().saturating_sub(40);
        self.log[from..].join("\n")
    }

    /// The init is alive and not going to die on its own or by our hand.
    fn init_steady(&self) -> bool {
        !self.init_killed && !self.init_short && self.init.as_ref().is_some_and(|i| !i.finished())
    }

    fn create_and_start(&mut self, d: &Daemon) {
        self.generation += 1;
        self.init_short = self.rng.below(4) == 0;
        let code = 1 + self.rng.below(100) as u32;
        let args: Vec<String> = if self.init_short {
            let ms = 50 + self.rng.below(600);
            vec!["/bin/sh".into(), "-c".into(), format!("sleep 0.{ms:03}; exit {code}")]
        } else {
            vec!["/bin/sleep".into(), "1000".into()]
        };
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        self.bundle = make_bundle(d, &self.id, &argv);
        let pid = create_task(d, &self.client, &create_req(&self.id, &self.bundle, None));
        self.note(format!("gen {} create {argv:?} -> pid {pid}", self.generation));
        let started = self
            .client
            .start(rpc_ctx(&self.ns), &start_req(&self.id, ""))
            .unwrap_or_else(|e| panic!("{}: Start of the init: {}", self.id, describe_err(&e)));
        assert_eq!(started.pid, pid, "Start answers the pid Create did");
        let mut allowed = BTreeSet::from([137]);
        if self.init_short {
            allowed.insert(code);
        }
        self.init = Some(Started {
            container: self.id.clone(),
            exec_id: String::new(),
            pid,
            allowed,
            ends_by_itself: self.init_short,
            signalled: false,
            output: None,
            wait: Some(spawn_wait(&self.client, &self.ns, &self.id, "")),
            status: None,
        });
        self.init_killed = false;
        self.paused = false;
    }

    fn exec(&mut self) {
        let live = self.execs.iter().filter(|e| !e.finished()).count();
        if live >= MAX_LIVE_EXECS {
            return;
        }
        self.next_exec += 1;
        let exec_id = format!("x{}-{}", self.generation, self.next_exec);
        let code = self.rng.below(120) as u32;
        // Half of the execs that end by themselves print a line first, to a stdout fifo, a
        // third of those through a terminal.
        let marker = format!("out-{}-{exec_id}", self.id);
        let prints = self.rng.below(2) == 0;
        let say = if prints {
            format!("echo {marker}; ")
        } else {
            String::new()
        };
        let kind = self.rng.below(4);
        // A `cat` reads a line from its stdin fifo, echoes it and ends 0 at CloseIO.
        let reads_stdin = kind == 3;
        let (code, prints) = if reads_stdin { (0, true) } else { (code, prints) };
        let (args, ends): (Vec<String>, bool) = match kind {
            0 => (vec!["/bin/sh".into(), "-c".into(), format!("{say}exit {code}")], true),
            1 => {
                let ms = self.rng.below(300);
                let script = format!("{say}sleep 0.{ms:03}; exit {code}");
                (vec!["/bin/sh".into(), "-c".into(), script], true)
            }
            2 => (vec!["/bin/sleep".into(), "1000".into()], false),
            _ => (vec!["/bin/cat".into()], true),
        };
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut req = exec_req_in(&self.bundle, &self.id, &exec_id, &argv);
        let stdin = reads_stdin.then(|| {
            let path = self.fifo_dir.join(format!("{exec_id}-stdin"));
            nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo stdin");
            req.stdin = path.to_string_lossy().into_owned();
            path
        });
        let mut output = (prints && ends).then(|| {
            let fifo = FifoReader::create(&self.fifo_dir.join(format!("{exec_id}-stdout")));
            req.stdout = fifo.uri();
            if self.rng.below(3) == 0 {
                with_terminal(&mut req);
            }
            (fifo, marker)
        });
        if let Err(e) = self.client.exec(rpc_ctx(&self.ns), &req) {
            let excused = !self.init_steady();
            return self.failed("Exec", format!("exec {exec_id} {argv:?}"), &e, excused);
        }
        match self.client.start(rpc_ctx(&self.ns), &start_req(&self.id, &exec_id)) {
            Ok(r) => {
                self.note(format!(
                    "exec+start {exec_id} {argv:?}{} -> pid {}",
                    if req.terminal { " (terminal)" } else { "" },
                    r.pid
                ));
                if let Some(path) = &stdin {
                    let line = format!("{}\n", output.as_ref().expect("cat has an output").1);
                    let fed = feed(path, line.as_bytes());
                    let closed = self
                        .client
                        .close_io(rpc_ctx(&self.ns), &close_stdin_req(&self.id, &exec_id));
                    self.note(format!("stdin of {exec_id}: fed {fed:?}, CloseIO {closed:?}"));
                    assert!(
                        (fed.is_ok() && closed.is_ok()) || !self.init_steady(),
                        "{}: feeding and closing the stdin of a live `cat` ({exec_id}) failed: {fed:?} {closed:?}",
                        self.id
                    );
                    if fed.is_err() {
                        output = None; // nothing to expect from it
                    }
                    if let Err(e) = &closed {
                        self.tolerate("CloseIO", e);
                    }
                }
                let mut allowed = BTreeSet::from([137]); // the init's end kills it
                if ends {
                    allowed.insert(code);
                }
                if stdin.is_some() && req.terminal {
                    // At the end of a terminal's stdin the master is hung up, as by the Go
                    // shim: a `cat` still reading gets SIGHUP.
                    allowed.insert(128 + libc::SIGHUP as u32);
                }
                self.execs.push(Started {
                    container: self.id.clone(),
                    exec_id: exec_id.clone(),
                    pid: r.pid,
                    allowed,
                    ends_by_itself: ends,
                    signalled: false,
                    output,
                    wait: Some(spawn_wait(&self.client, &self.ns, &self.id, &exec_id)),
                    status: None,
                });
            }
            Err(e) => {
                let excused = self.paused || !self.init_steady();
                self.failed(
                    "Start(exec)",
                    format!("exec+start {exec_id} {argv:?}: start"),
                    &e,
                    excused,
                );
                self.unstarted.push(exec_id);
            }
        }
    }

    fn kill_exec(&mut self) {
        if self.execs.is_empty() {
            return;
        }
        let i = self.rng.below(self.execs.len() as u64) as usize;
        let sig = if self.rng.below(2) == 0 { 9 } else { 15 };
        let (exec_id, may_be_gone) = {
            let e = &self.execs[i];
            (e.exec_id.clone(), e.finished() || e.ends_by_itself || e.signalled)
        };
        match self
            .client
            .kill(rpc_ctx(&self.ns), &kill_req(&self.id, &exec_id, sig, false))
        {
            Ok(_) => {
                self.note(format!("kill {exec_id} {sig}"));
                self.execs[i].allowed.insert(128 + sig);
                self.execs[i].signalled = true;
            }
            Err(e) => {
                let excused = may_be_gone || !self.init_steady();
                self.failed("Kill(exec)", format!("kill {exec_id} {sig}"), &e, excused);
            }
        }
    }

    fn state_of_some_process(&mut self) {
        let pick = self.rng.below(self.execs.len() as u64 + 1) as usize;
        let (exec_id, finished) = match self.execs.get(pick) {
            Some(e) => (e.exec_id.clone(), e.finished()),
            None => (String::new(), self.init.as_ref().is_none_or(Started::finished)),
        };
        match self.client.state(rpc_ctx(&self.ns), &state_req(&self.id, &exec_id)) {
            Ok(st) => {
                let status = st.status.enum_value();
                self.note(format!("state {exec_id:?} -> {status:?} {}", st.exit_status));
                if finished {
                    // Its Wait has answered: State says STOPPED with the same status.
                    let p = match self.execs.get_mut(pick) {
                        Some(e) => e,
                        None => self.init.as_mut().expect("init"),
                    };
                    let waited = p.join();
                    assert_eq!(
                        (status, st.exit_status),
                        (Ok(Status::STOPPED), waited),
                        "{}: State of {exec_id:?} after its Wait",
                        self.id
                    );
                }
            }
            Err(e) => panic!(
                "{}: State of {exec_id:?}: {}\n{}",
                self.id,
                describe_err(&e),
                self.tail()
            ),
        }
    }

    /// An exec that ended by itself (its own exit code) printed its line before: every byte
    /// of it reached the client's fifo.
    fn check_output(&self, e: &Started, waited: u32) {
        let Some((fifo, marker)) = &e.output else {
            return;
        };
        if e.signalled || waited >= 128 || !e.allowed.contains(&waited) {
            return;
        }
        assert!(
            fifo.wait_text(Duration::from_secs(10), |t| t.contains(marker.as_str())),
            "{}: exec {} ended with its own status {waited} but its output {:?} lacks {marker:?}\n{}",
            self.id,
            e.exec_id,
            fifo.text(),
            self.tail()
        );
    }

    fn delete_a_stopped_exec(&mut self) {
        let Some(i) = self.execs.iter().position(Started::finished) else {
            return;
        };
        let mut e = self.execs.swap_remove(i);
        let waited = e.join();
        self.check_output(&e, waited);
        let del = self
            .client
            .delete(rpc_ctx(&self.ns), &delete_req(&self.id, &e.exec_id))
            .unwrap_or_else(|err| {
                panic!(
                    "{}: Delete of stopped exec {}: {}",
                    self.id,
                    e.exec_id,
                    describe_err(&err)
                )
            });
        self.note(format!("delete {} -> {}", e.exec_id, del.exit_status));
        assert_eq!(
            (del.exit_status, del.pid),
            (waited, e.pid),
            "{}: Delete of {} answers what Wait saw",
            self.id,
            e.exec_id
        );
        self.done.push(e);
    }

    fn pause_and_resume(&mut self) {
        match self.client.pause(rpc_ctx(&self.ns), &pause_req(&self.id)) {
            Ok(_) => {
                self.paused = true;
                self.note("pause".into());
                std::thread::sleep(Duration::from_millis(self.rng.below(80)));
                // While paused: Pids and State still answer.
                let pids = self.client.pids(rpc_ctx(&self.ns), &pids_req(&self.id));
                assert!(pids.is_ok(), "{}: Pids of a paused container: {pids:?}", self.id);
                match self.client.resume(rpc_ctx(&self.ns), &resume_req(&self.id)) {
                    Ok(_) => {
                        self.paused = false;
                        self.note("resume".into());
                    }
                    Err(e) => {
                        // Only an init that ended meanwhile (its exit raced the Pause) excuses
                        // this; Delete and the final leak check then show nothing stays frozen.
                        let excused = !self.init_steady();
                        self.failed("Resume", "resume after pause".into(), &e, excused);
                        self.paused = false;
                    }
                }
            }
            Err(e) => {
                let excused = !self.init_steady();
                self.failed("Pause", "pause".into(), &e, excused);
            }
        }
    }

    fn pids(&mut self) {
        match self.client.pids(rpc_ctx(&self.ns), &pids_req(&self.id)) {
            Ok(r) => self.note(format!("pids -> {}", r.processes.len())),
            Err(e) => {
                let excused = !self.init_steady();
                self.failed("Pids", "pids".into(), &e, excused);
            }
        }
    }

    /// Stats, or an Update of the pids limit: both answer while the init lives.
    fn stats_or_update(&mut self) {
        let res = if self.rng.below(2) == 0 {
            self.client
                .stats(rpc_ctx(&self.ns), &stats_req(&self.id))
                .map(|_| "stats")
        } else {
            let limit = 100 + self.rng.below(900);
            let resources = format!(r#"{{"pids":{{"limit":{limit}}}}}"#);
            let r = update_req(&self.id, resources.as_bytes());
            self.client.update(rpc_ctx(&self.ns), &r).map(|_| "update")
        };
        match res {
            Ok(what) => self.note(what.to_string()),
            Err(e) => {
                let excused = !self.init_steady();
                self.failed("Stats/Update", "stats/update".into(), &e, excused);
            }
        }
    }

    fn kill_init(&mut self) {
        let all = self.rng.below(3) == 0;
        match self.client.kill(rpc_ctx(&self.ns), &kill_req(&self.id, "", 9, all)) {
            Ok(_) => self.note(format!("kill init 9 all={all}")),
            Err(e) => {
                // Only an init that may have ended by itself excuses it.
                let excused = self.init_short;
                self.failed("Kill(init)", format!("kill init 9 all={all}"), &e, excused);
            }
        }
        self.init_killed = true;
    }

    /// Ends this incarnation: the init dies (if it has not), every process is waited for, the
    /// execs and then the init are deleted.
    fn finish_incarnation(&mut self) {
        if !self.init_killed {
            self.kill_init();
        }
        let mut init = self.init.take().expect("an incarnation has an init");
        let status = init.join();
        self.note(format!("init waited -> {status}"));
        assert!(
            init.allowed.contains(&status),
            "{}: init ended with {status}, allowed {:?}\n{}",
            self.id,
            init.allowed,
            self.tail()
        );
        for mut e in std::mem::take(&mut self.execs) {
            let waited = e.join();
            self.check_output(&e, waited);
            assert!(
                e.allowed.contains(&waited),
                "{}: exec {} ended with {waited}, allowed {:?}\n{}",
                self.id,
                e.exec_id,
                e.allowed,
                self.tail()
            );
            let del = self
                .client
                .delete(rpc_ctx(&self.ns), &delete_req(&self.id, &e.exec_id))
                .unwrap_or_else(|err| panic!("{}: Delete of exec {}: {}", self.id, e.exec_id, describe_err(&err)));
            assert_eq!(del.exit_status, waited, "{}: Delete of {}", self.id, e.exec_id);
            self.done.push(e);
        }
        for exec_id in std::mem::take(&mut self.unstarted) {
            if let Err(e) = self.client.delete(rpc_ctx(&self.ns), &delete_req(&self.id, &exec_id)) {
                panic!(
                    "{}: Delete of never-started exec {exec_id}: {}",
                    self.id,
                    describe_err(&e)
                );
            }
        }
        let del = self
            .client
            .delete(rpc_ctx(&self.ns), &delete_req(&self.id, ""))
            .unwrap_or_else(|e| panic!("{}: Delete of the init: {}\n{}", self.id, describe_err(&e), self.tail()));
        assert_eq!(
            (del.exit_status, del.pid),
            (status, init.pid),
            "{}: Delete of the init answers what Wait saw",
            self.id
        );
        let gone = self.client.state(rpc_ctx(&self.ns), &state_req(&self.id, ""));
        assert_eq!(
            gone.as_ref().err().and_then(code_of),
            Some(ttrpc::Code::NOT_FOUND),
            "{}: State after Delete: {gone:?}",
            self.id
        );
        self.note(format!("gen {} deleted", self.generation));
        self.done.push(init);
    }

    fn walk(&mut self, d: &Daemon, steps: usize) {
        self.create_and_start(d);
        for step in 0..steps {
            let roll = self.rng.below(100);
            match roll {
                0..=29 => self.exec(),
                30..=44 => self.kill_exec(),
                45..=59 => self.state_of_some_process(),
                60..=69 => self.delete_a_stopped_exec(),
                70..=76 => self.pause_and_resume(),
                77..=81 => self.pids(),
                82..=84 if !self.init_killed => self.kill_init(),
                85..=90 => self.stats_or_update(),
                _ => std::thread::sleep(Duration::from_millis(self.rng.below(40))),
            }
            // An incarnation lasts about 30 steps, or ends sooner once its init is gone.
            let init_gone = self.init.as_ref().is_some_and(Started::finished);
            if (step % 30 == 29 || init_gone) && step + 1 < steps {
                self.finish_incarnation();
                self.create_and_start(d);
            }
        }
        self.finish_incarnation();
    }
}

/// Writes `data` into the fifo at `path` once a reader holds it (bounded wait).
fn feed(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut f = loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
        {
            Ok(f) => break f,
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    f.write_all(data)
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Every started process has exactly one `/tasks/exit`, with its Wait's status; no other
/// `/tasks/exit` names one of our containers.
/// How an exit event names its process: container, id (the container's own for the init) and
/// pid.
fn exit_key(e: &Event) -> (String, String, u64) {
    (
        e.container_id().unwrap_or_default().to_string(),
        e.str_field("id").to_string(),
        e.u64_field("pid"),
    )
}

fn check_exit_events(ev: &EventWatcher, drivers: &[Driver], ids: &[String]) {
    let done: Vec<&Started> = drivers.iter().flat_map(|dr| dr.done.iter()).collect();
    let exits_of = |ev: &EventWatcher| {
        ev.events()
            .into_iter()
            .filter(|e| e.topic == "/tasks/exit" && ids.iter().any(|id| e.container_id() == Some(id)))
            .collect::<Vec<_>>()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while exits_of(ev).len() < done.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    // Time for a duplicate to show up, had one been sent.
    std::thread::sleep(Duration::from_millis(500));
    let exits = exits_of(ev);
    // Pids come round again in a long walk, so a process is known by its container, id and pid
    // together with the order of its incarnation: compare, per such key, the statuses Wait saw
    // with those the events carry.
    let mut waited: BTreeMap<(String, String, u64), Vec<u64>> = BTreeMap::new();
    for p in &done {
        let id_field = if p.exec_id.is_empty() { &p.container } else { &p.exec_id };
        waited
            .entry((p.container.clone(), id_field.clone(), u64::from(p.pid)))
            .or_default()
            .push(u64::from(p.status.expect("waited")));
    }
    let mut published: BTreeMap<(String, String, u64), Vec<u64>> = BTreeMap::new();
    for e in &exits {
        published
            .entry(exit_key(e))
            .or_default()
            .push(e.u64_field("exit_status"));
    }
    for (key, statuses) in &mut waited {
        statuses.sort_unstable();
        let mut events = published.get(key).cloned().unwrap_or_default();
        events.sort_unstable();
        assert_eq!(
            events,
            *statuses,
            "{key:?}: the exit statuses of its /tasks/exit events (left) differ from its Waits' (right): {:#?}",
            exits
                .iter()
                .filter(|e| e.container_id() == Some(key.0.as_str()) && e.u64_field("pid") == key.2)
                .map(|e| &e.line)
                .collect::<Vec<_>>()
        );
    }
    // With every started process's events matched above, any event left names a process
    // that never started.
    let strays: Vec<String> = exits
        .iter()
        .filter(|e| !waited.contains_key(&exit_key(e)))
        .map(|e| {
            // With what its driver did to that process.
            let (cid, pid) = (e.container_id().unwrap_or_default(), e.u64_field("pid"));
            let id = e.str_field("id");
            let calls: Vec<&String> = drivers
                .iter()
                .filter(|dr| dr.id == cid)
                .flat_map(|dr| dr.log.iter())
                .filter(|l| l.contains(&format!(" {id} ")) || l.contains(&format!("pid {pid}")))
                .collect();
            format!("{}\n    {calls:?}", e.line)
        })
        .collect();
    assert!(
        strays.is_empty(),
        "{} /tasks/exit events for {} processes started; for processes never started: {strays:#?}",
        exits.len(),
        done.len()
    );
}

#[test]
fn a_random_walk_over_the_task_api_loses_no_exit_and_leaves_nothing() {
    let seed = env_u64("E2E_WALK_SEED").unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos() as u64;
        t | 1
    });
    let steps = env_u64("E2E_WALK_STEPS").map_or(STEPS, |s| s as usize);
    eprintln!(
        "random walk: seed {seed} ({CONTAINERS} containers, {steps} steps each; E2E_WALK_SEED={seed} replays it)"
    );
    let d = Daemon::start();
    let ev = d.events();
    let ids: Vec<String> = (0..CONTAINERS).map(|i| d.id(&format!("walk{i}"))).collect();
    // The shim is started for the first container; the others join it as a group would.
    let first_bundle = make_bundle(&d, &ids[0], &["/bin/sleep", "1000"]);
    let shim = HandShim::start(&d, &ids[0], &first_bundle, b"");
    let tolerated = Arc::new(Mutex::new(BTreeMap::new()));
    let drivers: Vec<Driver> = std::thread::scope(|scope| {
        let handles: Vec<_> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let mut driver = Driver {
                    id: id.clone(),
                    bundle: PathBuf::new(),
                    fifo_dir: {
                        let dir = d.tmp().join(format!("walk-fifos-{i}"));
                        std::fs::create_dir_all(&dir).expect("mkdir fifo dir");
                        dir
                    },
                    ns: d.ns().to_string(),
                    client: shim.client(),
                    rng: Rng(seed ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(i as u64 + 1))),
                    log: Vec::new(),
                    done: Vec::new(),
                    init: None,
                    execs: Vec::new(),
                    unstarted: Vec::new(),
                    init_killed: false,
                    init_short: false,
                    paused: false,
                    next_exec: 0,
                    generation: 0,
                    tolerated: tolerated.clone(),
                };
                let d = &d;
                scope.spawn(move || {
                    driver.walk(d, steps);
                    driver
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| panic!("a driver failed (seed {seed})")))
            .collect()
    });
    let started: usize = drivers.iter().map(|dr| dr.done.len()).sum();
    eprintln!(
        "random walk: {started} processes started and ended; tolerated failures:\n{}",
        tolerated
            .lock()
            .unwrap()
            .iter()
            .map(|(what, n)| format!("  {n:5} {what}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    check_exit_events(&ev, &drivers, &ids);

    let client = shim.client();
    let daemon = connect_pids(&d, &client, &ids[0]).0 as i32;
    shutdown_and_wait(&d, client, &ids[0], daemon);
    drop(shim);
    d.assert_clean();
}
