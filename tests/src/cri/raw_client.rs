//! CRI calls that [`CriClient`](super::CriClient) does not offer, on a connection of their own:
//! ListContainerStats, a call with a caller-chosen deadline (to cancel it early, as kubelet does
//! when its context ends), and the GetContainerEvents stream (evented PLEG, containerd 1.7+).

use super::api::runtime_service_client::RuntimeServiceClient;
use super::api::*;
use super::client::{connect_channel, runtime, CriError, CriResult};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use tonic::transport::Channel;

/// A blocking client for the calls [`CriClient`](super::CriClient) lacks.
pub struct RawCri {
    rt: tokio::runtime::Runtime,
    runtime: RuntimeServiceClient<Channel>,
}

impl RawCri {
    /// Connects to containerd's gRPC socket at `path` (`CriDaemon::address()`).
    pub fn connect(path: &Path) -> CriResult<RawCri> {
        let rt = runtime();
        let channel = connect_channel(&rt, path, None)?;
        Ok(RawCri {
            rt,
            runtime: RuntimeServiceClient::new(channel).max_decoding_message_size(64 << 20),
        })
    }

    fn call<T, F>(&self, rpc: &'static str, deadline: Duration, fut: F) -> CriResult<T>
    where
        F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        match self.rt.block_on(async { tokio::time::timeout(deadline, fut).await }) {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(s)) => Err(CriError {
                rpc,
                code: s.code(),
                message: s.message().to_string(),
            }),
            Err(_) => Err(CriError {
                rpc,
                code: tonic::Code::DeadlineExceeded,
                message: format!("cancelled by the client after {deadline:?}"),
            }),
        }
    }

    /// ListContainerStats with `filter` (`None`: every container).
    pub fn list_container_stats(&self, filter: Option<ContainerStatsFilter>) -> CriResult<Vec<ContainerStats>> {
        let mut c = self.runtime.clone();
        self.call("ListContainerStats", Duration::from_secs(60), async move {
            c.list_container_stats(ListContainerStatsRequest { filter }).await
        })
        .map(|r| r.stats)
    }

    /// PodSandboxStats of one pod.
    pub fn pod_sandbox_stats(&self, pod_id: &str) -> CriResult<Option<PodSandboxStats>> {
        let mut c = self.runtime.clone();
        let req = PodSandboxStatsRequest {
            pod_sandbox_id: pod_id.into(),
        };
        self.call("PodSandboxStats", Duration::from_secs(60), async move {
            c.pod_sandbox_stats(req).await
        })
        .map(|r| r.stats)
    }

    /// ListPodSandboxStats with `filter` (`None`: every pod).
    pub fn list_pod_sandbox_stats(&self, filter: Option<PodSandboxStatsFilter>) -> CriResult<Vec<PodSandboxStats>> {
        let mut c = self.runtime.clone();
        self.call("ListPodSandboxStats", Duration::from_secs(60), async move {
            c.list_pod_sandbox_stats(ListPodSandboxStatsRequest { filter }).await
        })
        .map(|r| r.stats)
    }

    /// StopContainer whose call the client abandons after `deadline` (the request's context is
    /// cancelled, as when kubelet gives up).
    pub fn stop_container_within(&self, id: &str, timeout_s: i64, deadline: Duration) -> CriResult<()> {
        let mut c = self.runtime.clone();
        let mut req = tonic::Request::new(StopContainerRequest {
            container_id: id.into(),
            timeout: timeout_s,
        });
        req.set_timeout(deadline);
        self.call("StopContainer", deadline, async move { c.stop_container(req).await })
            .map(drop)
    }
}

/// A GetContainerEvents stream read by a thread of its own into a list.
pub struct EventWatch {
    events: Arc<Mutex<Vec<ContainerEventResponse>>>,
    error: Arc<Mutex<Option<CriError>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EventWatch {
    /// Subscribes to container events at the gRPC socket `path`. Returns after 2s, or earlier
    /// with the error of the call (Unimplemented before containerd 1.7).
    pub fn start(path: &Path) -> CriResult<EventWatch> {
        let events = Arc::new(Mutex::new(Vec::new()));
        let error = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let (opened_tx, opened_rx) = std::sync::mpsc::channel::<CriResult<()>>();
        let path = path.to_path_buf();
        let (ev, er, st) = (events.clone(), error.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let rt = runtime();
            let channel = match connect_channel(&rt, &path, None) {
                Ok(c) => c,
                Err(e) => {
                    let _ = opened_tx.send(Err(e));
                    return;
                }
            };
            let mut client = RuntimeServiceClient::new(channel);
            rt.block_on(async move {
                // containerd answers (sends response headers) only with the first event: wait
                // for the answer in slices, so that a stop request is seen meanwhile.
                let mut call = Box::pin(client.get_container_events(GetEventsRequest {}));
                let answer = loop {
                    if st.load(Ordering::Relaxed) {
                        return;
                    }
                    if let Ok(a) = tokio::time::timeout(Duration::from_millis(200), &mut call).await {
                        break a;
                    }
                };
                let mut stream = match answer {
                    Ok(r) => r.into_inner(),
                    Err(s) => {
                        let _ = opened_tx.send(Err(CriError {
                            rpc: "GetContainerEvents",
                            code: s.code(),
                            message: s.message().to_string(),
                        }));
                        return;
                    }
                };
                while !st.load(Ordering::Relaxed) {
                    match tokio::time::timeout(Duration::from_millis(200), stream.message()).await {
                        Err(_) => {}
                        Ok(Ok(Some(e))) => ev.lock().unwrap_or_else(|p| p.into_inner()).push(e),
                        Ok(Ok(None)) => break,
                        Ok(Err(s)) => {
                            *er.lock().unwrap_or_else(|p| p.into_inner()) = Some(CriError {
                                rpc: "GetContainerEvents",
                                code: s.code(),
                                message: s.message().to_string(),
                            });
                            break;
                        }
                    }
                }
            });
        });
        // An error (Unimplemented before containerd 1.7) comes at once; a subscription is
        // silent until the first event: after 2s without an answer it is taken as open.
        let opened = match opened_rx.recv_timeout(Duration::from_secs(2)) {
            Ok(Err(e)) => Err(e),
            _ => Ok(()),
        };
        let watch = EventWatch {
            events,
            error,
            stop,
            thread: Some(thread),
        };
        opened.map(|()| watch)
    }

    /// The events received so far.
    pub fn events(&self) -> Vec<ContainerEventResponse> {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The error that ended the stream, if any.
    pub fn error(&self) -> Option<CriError> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for EventWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
