//! ttrpc framing: a 10-byte big-endian header (length, stream id, type, flags)
//! followed by a protobuf `Request` or `Response`. Shared by the server and the
//! event client, both of which run on the event loop with non-blocking sockets.

use protobuf::{EnumOrUnknown, Message};
use ttrpc::{Code, Response, Status};

pub const HEADER_LEN: usize = 10;
/// Largest frame body ttrpc allows.
pub const MAX_DATA: usize = 4 << 20;
pub const TYPE_REQUEST: u8 = 1;
pub const TYPE_RESPONSE: u8 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub len: u32,
    pub stream: u32,
    pub kind: u8,
    pub flags: u8,
}

impl Header {
    pub fn parse(b: &[u8]) -> Header {
        Header {
            len: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            stream: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            kind: b[8],
            flags: b[9],
        }
    }
}

/// Appends one frame to `out`.
pub fn push_frame(out: &mut Vec<u8>, stream: u32, kind: u8, body: &[u8]) {
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&stream.to_be_bytes());
    out.push(kind);
    out.push(0);
    out.extend_from_slice(body);
}

/// Appends a response frame: a payload, or an error status.
pub fn push_response(out: &mut Vec<u8>, stream: u32, result: Result<Vec<u8>, (Code, String)>) {
    let mut resp = Response::new();
    match result {
        Ok(payload) => resp.payload = payload,
        Err((code, message)) => {
            let mut status = Status::new();
            status.code = EnumOrUnknown::new(code);
            status.message = message;
            resp.status = protobuf::MessageField::some(status);
        }
    }
    // A Response of known fields always encodes.
    let body = resp.write_to_bytes().unwrap_or_default();
    push_frame(out, stream, TYPE_RESPONSE, &body);
}

/// One complete frame taken from a byte stream.
#[derive(Debug)]
pub enum Frame {
    Message {
        header: Header,
        body: Vec<u8>,
    },
    /// The peer sent a frame larger than ttrpc allows; its body was skipped.
    TooLarge {
        header: Header,
    },
}

/// Reassembles frames from whatever the socket delivered.
#[derive(Default)]
pub struct FrameReader {
    buf: Vec<u8>,
    /// Bytes of an oversized body still to skip.
    skip: usize,
}

impl FrameReader {
    pub fn feed(&mut self, mut data: &[u8]) {
        if self.skip > 0 {
            let n = self.skip.min(data.len());
            self.skip -= n;
            data = &data[n..];
        }
        self.buf.extend_from_slice(data);
    }

    pub fn next_frame(&mut self) -> Option<Frame> {
        if self.skip > 0 || self.buf.len() < HEADER_LEN {
            return None;
        }
        let header = Header::parse(&self.buf[..HEADER_LEN]);
        let len = header.len as usize;
        if len > MAX_DATA {
            let have = self.buf.len() - HEADER_LEN;
            let drop_now = have.min(len);
            self.skip = len - drop_now;
            self.buf.drain(..HEADER_LEN + drop_now);
            return Some(Frame::TooLarge { header });
        }
        if self.buf.len() < HEADER_LEN + len {
            return None;
        }
        let body = self.buf[HEADER_LEN..HEADER_LEN + len].to_vec();
        self.buf.drain(..HEADER_LEN + len);
        if self.buf.is_empty() && self.buf.capacity() > 64 * 1024 {
            self.buf = Vec::new();
        }
        Some(Frame::Message { header, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_anywhere() {
        let mut bytes = Vec::new();
        push_frame(&mut bytes, 1, TYPE_REQUEST, b"hello");
        push_frame(&mut bytes, 3, TYPE_REQUEST, b"");
        push_frame(&mut bytes, 5, TYPE_REQUEST, &[7u8; 300]);
        for split in 0..bytes.len() {
            let mut r = FrameReader::default();
            let mut got = Vec::new();
            r.feed(&bytes[..split]);
            while let Some(f) = r.next_frame() {
                got.push(f);
            }
            r.feed(&bytes[split..]);
            while let Some(f) = r.next_frame() {
                got.push(f);
            }
            let ids: Vec<u32> = got
                .iter()
                .map(|f| match f {
                    Frame::Message { header, .. } => header.stream,
                    Frame::TooLarge { .. } => 0,
                })
                .collect();
            assert_eq!(ids, vec![1, 3, 5], "split at {split}");
        }
    }

    #[test]
    fn oversized_frame_is_skipped() {
        let mut r = FrameReader::default();
        let mut head = Vec::new();
        head.extend_from_slice(&((MAX_DATA as u32) + 1).to_be_bytes());
        head.extend_from_slice(&9u32.to_be_bytes());
        head.extend_from_slice(&[TYPE_REQUEST, 0]);
        r.feed(&head);
        assert!(matches!(r.next_frame(), Some(Frame::TooLarge { header }) if header.stream == 9));
        r.feed(&vec![0u8; MAX_DATA + 1]);
        let mut next = Vec::new();
        push_frame(&mut next, 11, TYPE_REQUEST, b"x");
        r.feed(&next);
        match r.next_frame() {
            Some(Frame::Message { header, body }) => {
                assert_eq!(header.stream, 11);
                assert_eq!(body, b"x");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn error_response_round_trips() {
        let mut out = Vec::new();
        push_response(&mut out, 7, Err((Code::NOT_FOUND, "gone".into())));
        let h = Header::parse(&out);
        assert_eq!((h.stream, h.kind), (7, TYPE_RESPONSE));
        let resp = Response::parse_from_bytes(&out[HEADER_LEN..]).unwrap();
        assert_eq!(resp.status.code.enum_value(), Ok(Code::NOT_FOUND));
        assert_eq!(resp.status.message, "gone");
    }
}
