//! Randomised robustness tests for everything that reads untrusted bytes: ttrpc
//! frames, requests, runtime options, start's stdin, stdio URIs, config.json and
//! mount options. The release build aborts on panic, and a dead shim orphans its
//! containers, so none of these may panic, whatever the input.

use std::panic;

use protobuf::Message;

use crate::{bootstrap, flags, mount, options, spec, stdio, wire};

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let len = self.below(max + 1);
        (0..len).map(|_| self.next() as u8).collect()
    }

    /// Bytes biased towards the alphabet of the thing being parsed.
    fn text(&mut self, alphabet: &[u8], max: usize) -> String {
        let len = self.below(max + 1);
        (0..len)
            .map(|_| {
                if self.below(8) == 0 {
                    (self.next() as u8 % 0x7f).max(1) as char
                } else {
                    alphabet[self.below(alphabet.len())] as char
                }
            })
            .collect()
    }

    /// Valid protobuf encoding of `msg` with a few bytes flipped or cut.
    fn mangle(&mut self, mut bytes: Vec<u8>) -> Vec<u8> {
        if bytes.is_empty() {
            return self.bytes(32);
        }
        for _ in 0..=self.below(3) {
            let i = self.below(bytes.len());
            bytes[i] = self.next() as u8;
        }
        if self.below(3) == 0 {
            let cut = self.below(bytes.len());
            bytes.truncate(cut);
        }
        bytes
    }
}

const ROUNDS: usize = 20_000;

fn no_panic(name: &str, f: impl Fn(&mut Rng) + panic::RefUnwindSafe) {
    for seed in 1..=ROUNDS as u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let r = panic::catch_unwind(panic::AssertUnwindSafe(|| f(&mut rng)));
        assert!(r.is_ok(), "{name} panicked for seed {seed}");
    }
}

#[test]
fn ttrpc_frames_of_any_shape() {
    no_panic("FrameReader", |rng| {
        let mut reader = wire::FrameReader::default();
        let mut stream = rng.bytes(256);
        if rng.below(2) == 0 {
            // A plausible header in front, with a random length.
            let mut h = Vec::new();
            let stream_id = rng.next() as u32;
            let body = rng.bytes(64);
            wire::push_frame(&mut h, stream_id, wire::TYPE_REQUEST, &body);
            h.extend_from_slice(&stream);
            stream = h;
        }
        let mut at = 0;
        while at < stream.len() {
            let remaining = stream.len() - at;
            let n = 1 + rng.below(remaining);
            reader.feed(&stream[at..at + n]);
            at += n;
            while let Some(frame) = reader.next_frame() {
                if let wire::Frame::Message { body, .. } = frame {
                    let _ = ttrpc::Request::parse_from_bytes(&body);
                }
            }
        }
    });
}

#[test]
fn task_requests_and_options_decode_or_fail_cleanly() {
    let samples: Vec<Vec<u8>> = {
        let mut c = protos::task::CreateTaskRequest::new();
        c.id = "c1".into();
        c.bundle = "/b".into();
        c.stdout = "binary:///l?a=b".into();
        let mut m = protos::types::Mount::new();
        m.type_ = "overlay".into();
        m.options = vec!["lowerdir=/a".into()];
        c.rootfs.push(m);
        let o = protos::runc_options::Options {
            binary_name: "/r".into(),
            ..Default::default()
        };
        c.options = protobuf::MessageField::some(protos::any::pack(protos::any::RUNC_OPTIONS, &o).unwrap());
        let mut e = protos::task::ExecProcessRequest::new();
        e.exec_id = "e".into();
        e.spec = protobuf::MessageField::some(protos::any::pack_bytes(protos::any::OCI_PROCESS, b"{}".to_vec()));
        vec![c.write_to_bytes().unwrap(), e.write_to_bytes().unwrap()]
    };
    no_panic("requests", |rng| {
        let pick = rng.below(samples.len());
        let bytes = rng.mangle(samples[pick].clone());
        if let Ok(req) = protos::task::CreateTaskRequest::parse_from_bytes(&bytes) {
            let _ = options::decode(req.options.as_ref());
            let names = stdio::StdioNames {
                stdin: req.stdin.clone(),
                stdout: req.stdout.clone(),
                stderr: req.stderr.clone(),
                terminal: req.terminal,
            };
            let _ = names.scheme();
            for m in &req.rootfs {
                let m = mount::MountSpec::from(m);
                let _ = mount::parse_options(&m.options);
                let _ = mount::join_inside(std::path::Path::new("/r"), &m.target);
            }
        }
        if let Ok(req) = protos::task::ExecProcessRequest::parse_from_bytes(&bytes) {
            if let Some(a) = req.spec.as_ref() {
                let _ = serde_json::from_slice::<serde_json::Value>(&a.value);
            }
        }
    });
}

#[test]
fn start_stdin_of_any_shape() {
    no_panic("classify", |rng| {
        let stdin = rng.bytes(128);
        let _ = bootstrap::classify(&stdin, "c1").map(|i| i.options_any().map(|a| options::decode(Some(a))));
    });
}

#[test]
fn stdio_uris_of_any_shape() {
    no_panic("scheme", |rng| {
        let uri = rng.text(b"abcdfilnry:/?&=%+-_.0123456789ABCDEF", 48);
        let names = stdio::StdioNames {
            stdout: uri.clone(),
            stderr: uri,
            ..Default::default()
        };
        let _ = names.scheme();
    });
}

#[test]
fn config_json_of_any_shape() {
    let valid =
        br#"{"annotations":{"io.containerd.runc.v2.group":"g"},"linux":{"namespaces":[{"type":"pid","path":""}]}}"#;
    no_panic("spec", |rng| {
        let data = if rng.below(2) == 0 {
            rng.mangle(valid.to_vec())
        } else {
            rng.text(b"{}[]\":,annotationslinuxnamespacestypepidpath", 96)
                .into_bytes()
        };
        if let Ok(s) = spec::Spec::parse(&data) {
            let _ = s.group_key("id");
            let _ = s.has_private_pid_namespace();
        }
    });
}

#[test]
fn command_lines_of_any_shape() {
    no_panic("flags", |rng| {
        let n = rng.below(8);
        let args: Vec<String> = (0..n).map(|_| rng.text(b"-=abcdeginpstuvx", 12)).collect();
        if let Ok(f) = flags::Flags::parse(args) {
            let _ = f.require_namespace();
        }
    });
}
