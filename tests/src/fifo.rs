//! Client-side stdio fifos for requests a test sends to a shim itself (as ctr would create them).

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

fn mkfifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .unwrap_or_else(|e| panic!("mkfifo {}: {e}", path.display()));
}

#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    eof: bool,
}

/// A fifo the shim writes to (stdout/stderr), read to EOF by a background thread. The reader
/// opens it blocking, so it waits for the shim's writer like containerd's fifo reader does.
pub struct FifoReader {
    path: PathBuf,
    data: Arc<(Mutex<Captured>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl FifoReader {
    /// Makes the fifo at `path` and starts reading it.
    pub fn create(path: &Path) -> FifoReader {
        Self::create_throttled(path, 65536, Duration::ZERO)
    }

    /// Like [`create`](FifoReader::create), for a slow client: reads at most `chunk`
    /// bytes at a time and pauses `pause` after each read.
    pub fn create_throttled(path: &Path, chunk: usize, pause: Duration) -> FifoReader {
        mkfifo(path);
        let data = Arc::new((Mutex::new(Captured::default()), Condvar::new()));
        let (d, p) = (data.clone(), path.to_path_buf());
        let thread = std::thread::spawn(move || {
            if let Ok(mut f) = File::open(&p) {
                let mut buf = vec![0u8; chunk.clamp(1, 65536)];
                loop {
                    if !pause.is_zero() {
                        std::thread::sleep(pause);
                    }
                    match f.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            d.0.lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .bytes
                                .extend_from_slice(&buf[..n]);
                            d.1.notify_all();
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
            }
            d.0.lock().unwrap_or_else(|e| e.into_inner()).eof = true;
            d.1.notify_all();
        });
        FifoReader {
            path: path.to_path_buf(),
            data,
            thread: Some(thread),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path as a string for a request.
    pub fn uri(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data.0.lock().unwrap_or_else(|e| e.into_inner()).bytes).into_owned()
    }

    /// Waits until the text read so far satisfies `pred`; false on timeout or EOF without it.
    pub fn wait_text(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.data;
        let mut g = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if pred(&String::from_utf8_lossy(&g.bytes)) {
                return true;
            }
            let now = Instant::now();
            if g.eof || now >= deadline {
                return false;
            }
            g = cv.wait_timeout(g, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// Waits for EOF (every writer closed); true if it came within `timeout`.
    pub fn wait_eof(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.data;
        let mut g = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if g.eof {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            g = cv.wait_timeout(g, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

impl Drop for FifoReader {
    fn drop(&mut self) {
        // A reader still blocked in open() (the shim never opened the fifo) is released by a
        // writer that comes and goes at once.
        if let Ok(f) = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&self.path)
        {
            drop(f);
        }
        if let Some(t) = self.thread.take() {
            if t.is_finished() || self.wait_eof(Duration::from_secs(2)) {
                let _ = t.join();
            }
        }
    }
}

/// A fifo the shim reads from (stdin); the test writes into it.
pub struct FifoWriter {
    path: PathBuf,
    file: Option<File>,
}

impl FifoWriter {
    /// Makes the fifo at `path` (not opened yet: the shim opens its reader first).
    pub fn create(path: &Path) -> FifoWriter {
        mkfifo(path);
        FifoWriter {
            path: path.to_path_buf(),
            file: None,
        }
    }

    pub fn uri(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    /// Opens the write end once the shim has a reader (polls, bounded by `timeout`).
    pub fn open(&mut self, timeout: Duration) {
        let mut last = None;
        let f = crate::util::poll(timeout, Duration::from_millis(20), || match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&self.path)
        {
            Ok(f) => Some(f),
            Err(e) => {
                last = Some(e);
                None
            }
        })
        .unwrap_or_else(|| {
            panic!(
                "nobody opened {} for reading within {timeout:?}: {last:?}",
                self.path.display()
            )
        });
        // Back to blocking writes.
        nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty())).expect("fcntl F_SETFL");
        self.file = Some(f);
    }

    pub fn write_all(&mut self, data: &[u8]) {
        self.file
            .as_mut()
            .expect("FifoWriter::open first")
            .write_all(data)
            .unwrap_or_else(|e| panic!("write {}: {e}", self.path.display()));
    }

    /// Closes our write end (the shim's own writer may still keep the fifo open).
    pub fn close(&mut self) {
        self.file = None;
    }
}
