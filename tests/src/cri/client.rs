//! A blocking CRI v1 client (`runtime.v1.RuntimeService`, `runtime.v1.ImageService`) over
//! containerd's unix socket: tonic on a private current-thread tokio runtime, every call bounded.

use super::api::image_service_client::ImageServiceClient;
use super::api::runtime_service_client::RuntimeServiceClient;
use super::api::*;
use std::collections::BTreeSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint, Uri};

/// Bound for one CRI call (ExecSync: its own timeout plus this).
pub const CRI_TIMEOUT: Duration = Duration::from_secs(60);

/// A failed CRI call.
#[derive(Debug, Clone)]
pub struct CriError {
    pub rpc: &'static str,
    pub code: tonic::Code,
    pub message: String,
}

impl std::fmt::Display for CriError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CRI {} failed: {:?}: {}", self.rpc, self.code, self.message)
    }
}

impl std::error::Error for CriError {}

pub type CriResult<T> = Result<T, CriError>;

/// Sandbox and container ids created through a client (for the leak check and teardown).
#[derive(Debug, Default)]
pub struct CreatedIds {
    pub pods: BTreeSet<String>,
    pub containers: BTreeSet<String>,
}

/// A current-thread tokio runtime for one blocking client.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Opens a channel to the gRPC socket at `path` on `rt`; `timeout` bounds each call made on it
/// (`None`: callers bound their calls themselves).
pub(crate) fn connect_channel(
    rt: &tokio::runtime::Runtime,
    path: &Path,
    timeout: Option<Duration>,
) -> CriResult<Channel> {
    let path: PathBuf = path.to_path_buf();
    rt.block_on(async move {
        let mut endpoint = Endpoint::from_static("http://cri.invalid").connect_timeout(Duration::from_secs(5));
        if let Some(t) = timeout {
            endpoint = endpoint.timeout(t);
        }
        tokio::time::timeout(
            Duration::from_secs(10),
            endpoint.connect_with_connector(tower::service_fn(move |_: Uri| {
                let p = path.clone();
                async move {
                    let s = tokio::net::UnixStream::connect(p).await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
                }
            })),
        )
        .await
    })
    .map_err(|_| CriError {
        rpc: "connect",
        code: tonic::Code::DeadlineExceeded,
        message: "no connection within 10s".into(),
    })?
    .map_err(|e| CriError {
        rpc: "connect",
        code: tonic::Code::Unavailable,
        message: format!("{e:?}"),
    })
}

/// A connected CRI client. Cheap to use from one thread at a time.
pub struct CriClient {
    rt: tokio::runtime::Runtime,
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    created: Arc<Mutex<CreatedIds>>,
}

impl CriClient {
    /// Connects to the gRPC socket at `path`.
    pub fn connect(path: &Path) -> CriResult<CriClient> {
        Self::connect_recording(path, Arc::new(Mutex::new(CreatedIds::default())))
    }

    /// Connects and records every created sandbox and container id in `created`.
    pub fn connect_recording(path: &Path, created: Arc<Mutex<CreatedIds>>) -> CriResult<CriClient> {
        let rt = runtime();
        let channel = connect_channel(&rt, path, Some(CRI_TIMEOUT * 3))?;
        Ok(CriClient {
            rt,
            runtime: RuntimeServiceClient::new(channel.clone()).max_decoding_message_size(64 << 20),
            images: ImageServiceClient::new(channel).max_decoding_message_size(64 << 20),
            created,
        })
    }

    /// The ids created through this client so far.
    pub fn created(&self) -> Arc<Mutex<CreatedIds>> {
        self.created.clone()
    }

    fn call<T, F>(&self, rpc: &'static str, timeout: Duration, fut: F) -> CriResult<T>
    where
        F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        match self.rt.block_on(async { tokio::time::timeout(timeout, fut).await }) {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(s)) => Err(CriError {
                rpc,
                code: s.code(),
                message: s.message().to_string(),
            }),
            Err(_) => Err(CriError {
                rpc,
                code: tonic::Code::DeadlineExceeded,
                message: format!("no answer within {timeout:?} (client-side bound)"),
            }),
        }
    }

    fn rs(&self) -> RuntimeServiceClient<Channel> {
        self.runtime.clone()
    }

    // ---- runtime service

    pub fn version(&self) -> CriResult<VersionResponse> {
        let mut c = self.rs();
        self.call("Version", CRI_TIMEOUT, async move {
            c.version(VersionRequest { version: "v1".into() }).await
        })
    }

    pub fn status(&self) -> CriResult<StatusResponse> {
        let mut c = self.rs();
        self.call("Status", CRI_TIMEOUT, async move {
            c.status(StatusRequest { verbose: false }).await
        })
    }

    pub fn run_pod_sandbox(&self, config: &PodSandboxConfig, handler: &str) -> CriResult<String> {
        let mut c = self.rs();
        let req = RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: handler.to_string(),
        };
        let id = self
            .call(
                "RunPodSandbox",
                CRI_TIMEOUT,
                async move { c.run_pod_sandbox(req).await },
            )?
            .pod_sandbox_id;
        self.created
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pods
            .insert(id.clone());
        Ok(id)
    }

    pub fn stop_pod_sandbox(&self, id: &str) -> CriResult<()> {
        let mut c = self.rs();
        let req = StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        self.call(
            "StopPodSandbox",
            CRI_TIMEOUT,
            async move { c.stop_pod_sandbox(req).await },
        )
        .map(drop)
    }

    pub fn remove_pod_sandbox(&self, id: &str) -> CriResult<()> {
        let mut c = self.rs();
        let req = RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        self.call("RemovePodSandbox", CRI_TIMEOUT, async move {
            c.remove_pod_sandbox(req).await
        })
        .map(drop)
    }

    pub fn pod_sandbox_status(&self, id: &str, verbose: bool) -> CriResult<PodSandboxStatusResponse> {
        let mut c = self.rs();
        let req = PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose,
        };
        self.call("PodSandboxStatus", CRI_TIMEOUT, async move {
            c.pod_sandbox_status(req).await
        })
    }

    pub fn list_pod_sandbox(&self) -> CriResult<Vec<PodSandbox>> {
        let mut c = self.rs();
        self.call("ListPodSandbox", CRI_TIMEOUT, async move {
            c.list_pod_sandbox(ListPodSandboxRequest { filter: None }).await
        })
        .map(|r| r.items)
    }

    pub fn create_container(
        &self,
        pod_id: &str,
        config: &ContainerConfig,
        sandbox_config: &PodSandboxConfig,
    ) -> CriResult<String> {
        let mut c = self.rs();
        let req = CreateContainerRequest {
            pod_sandbox_id: pod_id.into(),
            config: Some(config.clone()),
            sandbox_config: Some(sandbox_config.clone()),
        };
        let id = self
            .call(
                "CreateContainer",
                CRI_TIMEOUT,
                async move { c.create_container(req).await },
            )?
            .container_id;
        self.created
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .containers
            .insert(id.clone());
        Ok(id)
    }

    pub fn start_container(&self, id: &str) -> CriResult<()> {
        let mut c = self.rs();
        let req = StartContainerRequest {
            container_id: id.into(),
        };
        self.call(
            "StartContainer",
            CRI_TIMEOUT,
            async move { c.start_container(req).await },
        )
        .map(drop)
    }

    /// `timeout_s`: seconds between SIGTERM (the image's stop signal) and SIGKILL.
    pub fn stop_container(&self, id: &str, timeout_s: i64) -> CriResult<()> {
        let mut c = self.rs();
        let req = StopContainerRequest {
            container_id: id.into(),
            timeout: timeout_s,
        };
        let bound = CRI_TIMEOUT + Duration::from_secs(timeout_s.max(0) as u64);
        self.call("StopContainer", bound, async move { c.stop_container(req).await })
            .map(drop)
    }

    pub fn remove_container(&self, id: &str) -> CriResult<()> {
        let mut c = self.rs();
        let req = RemoveContainerRequest {
            container_id: id.into(),
        };
        self.call(
            "RemoveContainer",
            CRI_TIMEOUT,
            async move { c.remove_container(req).await },
        )
        .map(drop)
    }

    pub fn list_containers(&self, filter: Option<ContainerFilter>) -> CriResult<Vec<Container>> {
        let mut c = self.rs();
        self.call("ListContainers", CRI_TIMEOUT, async move {
            c.list_containers(ListContainersRequest { filter }).await
        })
        .map(|r| r.containers)
    }

    pub fn container_status(&self, id: &str, verbose: bool) -> CriResult<ContainerStatusResponse> {
        let mut c = self.rs();
        let req = ContainerStatusRequest {
            container_id: id.into(),
            verbose,
        };
        self.call(
            "ContainerStatus",
            CRI_TIMEOUT,
            async move { c.container_status(req).await },
        )
    }

    pub fn update_container_resources(&self, id: &str, linux: LinuxContainerResources) -> CriResult<()> {
        let mut c = self.rs();
        let req = UpdateContainerResourcesRequest {
            container_id: id.into(),
            linux: Some(linux),
            ..Default::default()
        };
        self.call("UpdateContainerResources", CRI_TIMEOUT, async move {
            c.update_container_resources(req).await
        })
        .map(drop)
    }

    pub fn reopen_container_log(&self, id: &str) -> CriResult<()> {
        let mut c = self.rs();
        let req = ReopenContainerLogRequest {
            container_id: id.into(),
        };
        self.call("ReopenContainerLog", CRI_TIMEOUT, async move {
            c.reopen_container_log(req).await
        })
        .map(drop)
    }

    /// ExecSync with `timeout_s` (0: none); the client waits that long plus [`CRI_TIMEOUT`].
    pub fn exec_sync(&self, id: &str, cmd: &[&str], timeout_s: i64) -> CriResult<ExecSyncResponse> {
        let mut c = self.rs();
        let req = ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: timeout_s,
        };
        let bound = CRI_TIMEOUT + Duration::from_secs(timeout_s.max(0) as u64);
        self.call("ExecSync", bound, async move { c.exec_sync(req).await })
    }

    /// The streaming URL of an Exec.
    pub fn exec(&self, req: ExecRequest) -> CriResult<String> {
        let mut c = self.rs();
        self.call("Exec", CRI_TIMEOUT, async move { c.exec(req).await })
            .map(|r| r.url)
    }

    /// The streaming URL of an Attach.
    pub fn attach(&self, req: AttachRequest) -> CriResult<String> {
        let mut c = self.rs();
        self.call("Attach", CRI_TIMEOUT, async move { c.attach(req).await })
            .map(|r| r.url)
    }

    pub fn container_stats(&self, id: &str) -> CriResult<ContainerStats> {
        let mut c = self.rs();
        let req = ContainerStatsRequest {
            container_id: id.into(),
        };
        self.call(
            "ContainerStats",
            CRI_TIMEOUT,
            async move { c.container_stats(req).await },
        )?
        .stats
        .ok_or_else(|| CriError {
            rpc: "ContainerStats",
            code: tonic::Code::Ok,
            message: "response without stats".into(),
        })
    }

    // ---- image service

    /// The image `name` as CRI knows it, `None` if CRI does not know it.
    pub fn image_status(&self, name: &str) -> CriResult<Option<Image>> {
        let mut c = self.images.clone();
        let req = ImageStatusRequest {
            image: Some(ImageSpec {
                image: name.into(),
                ..Default::default()
            }),
            verbose: false,
        };
        self.call("ImageStatus", CRI_TIMEOUT, async move { c.image_status(req).await })
            .map(|r| r.image)
    }

    pub fn list_images(&self) -> CriResult<Vec<Image>> {
        let mut c = self.images.clone();
        self.call("ListImages", CRI_TIMEOUT, async move {
            c.list_images(ListImagesRequest { filter: None }).await
        })
        .map(|r| r.images)
    }
}
