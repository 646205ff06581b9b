//! A client for the CRI streaming server (the URL that Exec and Attach return): WebSocket with
//! the `v4.channel.k8s.io` subprotocol, as `kubectl exec` spoke it before SPDY was dropped.
//!
//! Every binary message starts with a channel byte: 0 stdin (client to server), 1 stdout,
//! 2 stderr, 3 error (the final `metav1.Status` as JSON), 4 terminal resize. The server closes
//! the connection after it wrote the status. There is no way to close stdin in v4: tests feed
//! whole lines to commands that stop reading by themselves.

use std::io::ErrorKind;
use std::net::TcpStream;
use std::time::{Duration, Instant};
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;
use tungstenite::{Message, WebSocket};

/// The subprotocol we ask for.
pub const PROTOCOL: &str = "v4.channel.k8s.io";

const CH_STDIN: u8 = 0;
const CH_STDOUT: u8 = 1;
const CH_STDERR: u8 = 2;
const CH_ERROR: u8 = 3;
const CH_RESIZE: u8 = 4;

/// An open exec/attach stream.
pub struct StreamSession {
    ws: WebSocket<TcpStream>,
    /// The subprotocol the server chose.
    pub protocol: String,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Raw bytes received on the error channel.
    pub error: Vec<u8>,
    /// The server closed the connection (or it broke).
    pub closed: bool,
    /// Frames seen per channel (including empty ones), for diagnostics.
    pub frames: [usize; 5],
}

impl std::fmt::Debug for StreamSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSession")
            .field("protocol", &self.protocol)
            .field("stdout", &String::from_utf8_lossy(&self.stdout))
            .field("stderr", &String::from_utf8_lossy(&self.stderr))
            .field("error", &String::from_utf8_lossy(&self.error))
            .field("closed", &self.closed)
            .field("frames", &self.frames)
            .finish()
    }
}

impl StreamSession {
    /// Connects to a streaming URL (`http://127.0.0.1:PORT/exec/TOKEN`) and upgrades.
    pub fn open(url: &str) -> Result<StreamSession, String> {
        let ws_url = if let Some(rest) = url.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            return Err(format!("unexpected streaming URL {url:?} (want http://)"));
        };
        let mut req = ws_url
            .as_str()
            .into_client_request()
            .map_err(|e| format!("bad URL {ws_url}: {e}"))?;
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(PROTOCOL));
        let host = req.uri().host().ok_or("no host")?.to_string();
        let port = req.uri().port_u16().unwrap_or(80);
        let tcp = TcpStream::connect((host.as_str(), port)).map_err(|e| format!("connect {host}:{port}: {e}"))?;
        tcp.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let (ws, resp) =
            tungstenite::client::client(req, tcp).map_err(|e| format!("WebSocket upgrade of {url}: {e}"))?;
        let protocol = resp
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        ws.get_ref()
            .set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(|e| e.to_string())?;
        Ok(StreamSession {
            ws,
            protocol,
            stdout: Vec::new(),
            stderr: Vec::new(),
            error: Vec::new(),
            closed: false,
            frames: [0; 5],
        })
    }

    /// Sends `data` on the stdin channel.
    pub fn send_stdin(&mut self, data: &[u8]) -> Result<(), String> {
        let mut frame = Vec::with_capacity(data.len() + 1);
        frame.push(CH_STDIN);
        frame.extend_from_slice(data);
        self.ws
            .send(Message::Binary(frame.into()))
            .map_err(|e| format!("send stdin: {e}"))
    }

    /// Sends a terminal size on the resize channel.
    pub fn send_resize(&mut self, width: u16, height: u16) -> Result<(), String> {
        let mut frame = vec![CH_RESIZE];
        frame.extend_from_slice(format!(r#"{{"Width":{width},"Height":{height}}}"#).as_bytes());
        self.ws
            .send(Message::Binary(frame.into()))
            .map_err(|e| format!("send resize: {e}"))
    }

    /// Reads messages until `done(self)` holds, the server closed, or `timeout` passed.
    /// Returns whether `done` holds.
    pub fn read_until(&mut self, timeout: Duration, done: impl Fn(&StreamSession) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while !done(self) {
            if self.closed || Instant::now() >= deadline {
                return done(self);
            }
            match self.ws.read() {
                Ok(Message::Binary(b)) => self.take(&b),
                Ok(Message::Text(t)) => self.error.extend_from_slice(format!("[text message: {t}]").as_bytes()),
                Ok(Message::Close(_)) => self.closed = true,
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => self.closed = true,
            }
        }
        true
    }

    /// Reads until the server closes the stream (after the command ended); false on timeout.
    pub fn wait_closed(&mut self, timeout: Duration) -> bool {
        self.read_until(timeout, |s| s.closed)
    }

    fn take(&mut self, b: &[u8]) {
        let Some((&ch, data)) = b.split_first() else {
            return;
        };
        if let Some(n) = self.frames.get_mut(ch as usize) {
            *n += 1;
        }
        match ch {
            CH_STDOUT => self.stdout.extend_from_slice(data),
            CH_STDERR => self.stderr.extend_from_slice(data),
            CH_ERROR => self.error.extend_from_slice(data),
            _ => {}
        }
    }

    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// The `metav1.Status` the server sent on the error channel, if any.
    pub fn status(&self) -> Option<serde_json::Value> {
        if self.error.is_empty() {
            return None;
        }
        serde_json::from_slice(&self.error).ok()
    }

    /// Exit code from the status: `Success` is 0, `NonZeroExitCode` carries it in a cause.
    pub fn exit_code(&self) -> Option<i32> {
        status_exit_code(&self.status()?)
    }

    /// Closes our side (detaches).
    pub fn close(mut self) {
        let _ = self.ws.close(None);
        let _ = self.read_until(Duration::from_secs(2), |s| s.closed);
    }
}

/// Exit code of a `metav1.Status` from the error channel.
pub fn status_exit_code(st: &serde_json::Value) -> Option<i32> {
    match st.get("status")?.as_str()? {
        "Success" => Some(0),
        _ if st.get("reason").and_then(|r| r.as_str()) == Some("NonZeroExitCode") => st["details"]["causes"]
            .as_array()?
            .iter()
            .find(|c| c["reason"] == "ExitCode")?["message"]
            .as_str()?
            .parse()
            .ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn exit_codes_from_status() {
        assert_eq!(status_exit_code(&json!({"metadata": {}, "status": "Success"})), Some(0));
        let failed = json!({
            "metadata": {}, "status": "Failure",
            "message": "command terminated with non-zero exit code: exit status 5",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": "5"}]},
        });
        assert_eq!(status_exit_code(&failed), Some(5));
        assert_eq!(status_exit_code(&json!({"status": "Failure", "message": "boom"})), None);
    }
}
