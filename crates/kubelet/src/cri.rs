//! A thin typed client of the CRI v1 RuntimeService and ImageService on a unix socket, behind the
//! [`Cri`] trait so that pod workers can be tested against a recording fake.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

pub use k8s_cri::v1::ContainerStats;
pub use k8s_cri::v1::{
    AuthConfig, Container, ContainerConfig, ContainerState, ContainerStatus, ExecSyncResponse,
    Image, PodSandbox, PodSandboxConfig, PodSandboxState, PodSandboxStats, PodSandboxStatus,
    VersionResponse,
};

/// Labels the kubelet puts on sandboxes and containers (upstream's names).
pub mod labels {
    pub const POD_UID: &str = "io.kubernetes.pod.uid";
    pub const POD_NAME: &str = "io.kubernetes.pod.name";
    pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
    pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
    /// Annotations (not labels) the kubelet keeps per container.
    pub const RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
    pub const TERMINATION_GRACE: &str = "io.kubernetes.pod.terminationGracePeriod";
    pub const TERMINATION_MESSAGE_HOST_PATH: &str = "k8rs.io/termination-message-host-path";
    pub const CONTAINER_HASH: &str = "io.kubernetes.container.hash";
}

/// A failed CRI call.
#[derive(Debug, thiserror::Error)]
pub enum CriError {
    /// The socket could not be reached; retry later.
    #[error("connecting to the CRI at {path}: {source}")]
    Connect {
        path: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
    /// The runtime answered with an error.
    #[error("CRI {op} failed: {status}")]
    Call {
        op: &'static str,
        #[source]
        status: Box<tonic::Status>,
    },
}

impl CriError {
    /// Whether the runtime said the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, CriError::Call { status, .. } if status.code() == tonic::Code::NotFound)
    }

    /// The runtime's message, for status messages.
    pub fn message(&self) -> String {
        match self {
            CriError::Call { status, .. } => status.message().to_string(),
            other => other.to_string(),
        }
    }
}

pub type Result<T> = std::result::Result<T, CriError>;

/// The CRI operations the kubelet uses.
#[async_trait]
pub trait Cri: Send + Sync + 'static {
    async fn version(&self) -> Result<VersionResponse>;
    async fn run_pod_sandbox(&self, config: PodSandboxConfig) -> Result<String>;
    async fn stop_pod_sandbox(&self, id: &str) -> Result<()>;
    async fn remove_pod_sandbox(&self, id: &str) -> Result<()>;
    async fn pod_sandbox_status(&self, id: &str) -> Result<PodSandboxStatus>;
    /// Sandboxes whose labels include all of `labels`.
    async fn list_pod_sandboxes(&self, labels: HashMap<String, String>) -> Result<Vec<PodSandbox>>;
    async fn create_container(
        &self,
        sandbox_id: &str,
        config: ContainerConfig,
        sandbox: PodSandboxConfig,
    ) -> Result<String>;
    async fn start_container(&self, id: &str) -> Result<()>;
    /// Stops a container: SIGTERM (or the image's stop signal), SIGKILL after `timeout` seconds.
    async fn stop_container(&self, id: &str, timeout: i64) -> Result<()>;
    async fn remove_container(&self, id: &str) -> Result<()>;
    /// Containers whose labels include all of `labels`.
    async fn list_containers(&self, labels: HashMap<String, String>) -> Result<Vec<Container>>;
    async fn container_status(&self, id: &str) -> Result<ContainerStatus>;
    async fn exec_sync(&self, id: &str, cmd: Vec<String>, timeout: i64)
    -> Result<ExecSyncResponse>;
    async fn list_images(&self) -> Result<Vec<Image>>;
    /// The image if the runtime has it.
    async fn image_status(&self, image: &str) -> Result<Option<Image>>;
    async fn remove_image(&self, image: &str) -> Result<()>;
    /// Asks the runtime to reopen a container's log file (after rotation).
    async fn reopen_container_log(&self, id: &str) -> Result<()>;
    /// Pulls an image and returns its reference (digest or ID).
    async fn pull_image(
        &self,
        image: &str,
        auth: Option<AuthConfig>,
        sandbox: Option<PodSandboxConfig>,
    ) -> Result<String>;
    /// Usage of every container (CPU and memory); runtimes without stats report none.
    async fn list_container_stats(&self) -> Result<Vec<ContainerStats>> {
        Ok(Vec::new())
    }
    /// Usage of every pod sandbox; runtimes without sandbox stats report none.
    async fn list_pod_sandbox_stats(&self) -> Result<Vec<PodSandboxStats>> {
        Ok(Vec::new())
    }
}

/// The CRI over gRPC on a unix socket.
#[derive(Clone)]
pub struct GrpcCri {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
}

impl std::fmt::Debug for GrpcCri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcCri").finish_non_exhaustive()
    }
}

impl GrpcCri {
    /// Connects to the CRI socket at `path` (lazily: calls fail until the socket answers).
    pub fn connect_lazy(path: &Path) -> Result<GrpcCri> {
        let socket = path.to_path_buf();
        let endpoint = Endpoint::try_from("http://[::]:50051")
            .map_err(|source| CriError::Connect {
                path: socket.clone(),
                source,
            })?
            .connect_timeout(Duration::from_secs(5));
        let channel = endpoint.connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(socket).await?)) }
        }));
        Ok(GrpcCri {
            runtime: RuntimeServiceClient::new(channel.clone()).max_decoding_message_size(64 << 20),
            images: ImageServiceClient::new(channel).max_decoding_message_size(64 << 20),
        })
    }
}

fn call_err(op: &'static str) -> impl FnOnce(tonic::Status) -> CriError {
    move |status| CriError::Call {
        op,
        status: Box::new(status),
    }
}

#[async_trait]
impl Cri for GrpcCri {
    async fn version(&self) -> Result<VersionResponse> {
        let req = cri::VersionRequest {
            version: "v1".into(),
        };
        let resp = self.runtime.clone().version(req).await;
        Ok(resp.map_err(call_err("Version"))?.into_inner())
    }

    async fn run_pod_sandbox(&self, config: PodSandboxConfig) -> Result<String> {
        let req = cri::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        };
        let resp = self.runtime.clone().run_pod_sandbox(req).await;
        Ok(resp
            .map_err(call_err("RunPodSandbox"))?
            .into_inner()
            .pod_sandbox_id)
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let req = cri::StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        let resp = self.runtime.clone().stop_pod_sandbox(req).await;
        resp.map_err(call_err("StopPodSandbox")).map(|_| ())
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let req = cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        let resp = self.runtime.clone().remove_pod_sandbox(req).await;
        resp.map_err(call_err("RemovePodSandbox")).map(|_| ())
    }

    async fn pod_sandbox_status(&self, id: &str) -> Result<PodSandboxStatus> {
        let req = cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: false,
        };
        let resp = self.runtime.clone().pod_sandbox_status(req).await;
        let status = resp
            .map_err(call_err("PodSandboxStatus"))?
            .into_inner()
            .status;
        status.ok_or_else(|| call_err("PodSandboxStatus")(tonic::Status::not_found("no status")))
    }

    async fn list_pod_sandboxes(&self, labels: HashMap<String, String>) -> Result<Vec<PodSandbox>> {
        let req = cri::ListPodSandboxRequest {
            filter: Some(cri::PodSandboxFilter {
                label_selector: labels,
                ..Default::default()
            }),
        };
        let resp = self.runtime.clone().list_pod_sandbox(req).await;
        Ok(resp.map_err(call_err("ListPodSandbox"))?.into_inner().items)
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: ContainerConfig,
        sandbox: PodSandboxConfig,
    ) -> Result<String> {
        let req = cri::CreateContainerRequest {
            pod_sandbox_id: sandbox_id.into(),
            config: Some(config),
            sandbox_config: Some(sandbox),
        };
        let resp = self.runtime.clone().create_container(req).await;
        Ok(resp
            .map_err(call_err("CreateContainer"))?
            .into_inner()
            .container_id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let req = cri::StartContainerRequest {
            container_id: id.into(),
        };
        let resp = self.runtime.clone().start_container(req).await;
        resp.map_err(call_err("StartContainer")).map(|_| ())
    }

    async fn stop_container(&self, id: &str, timeout: i64) -> Result<()> {
        let req = cri::StopContainerRequest {
            container_id: id.into(),
            timeout,
        };
        let resp = self.runtime.clone().stop_container(req).await;
        resp.map_err(call_err("StopContainer")).map(|_| ())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let req = cri::RemoveContainerRequest {
            container_id: id.into(),
        };
        let resp = self.runtime.clone().remove_container(req).await;
        resp.map_err(call_err("RemoveContainer")).map(|_| ())
    }

    async fn list_containers(&self, labels: HashMap<String, String>) -> Result<Vec<Container>> {
        let req = cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                label_selector: labels,
                ..Default::default()
            }),
        };
        let resp = self.runtime.clone().list_containers(req).await;
        Ok(resp
            .map_err(call_err("ListContainers"))?
            .into_inner()
            .containers)
    }

    async fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        let req = cri::ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        };
        let resp = self.runtime.clone().container_status(req).await;
        let status = resp
            .map_err(call_err("ContainerStatus"))?
            .into_inner()
            .status;
        status.ok_or_else(|| call_err("ContainerStatus")(tonic::Status::not_found("no status")))
    }

    async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout: i64,
    ) -> Result<ExecSyncResponse> {
        let req = cri::ExecSyncRequest {
            container_id: id.into(),
            cmd,
            timeout,
        };
        let resp = self.runtime.clone().exec_sync(req).await;
        Ok(resp.map_err(call_err("ExecSync"))?.into_inner())
    }

    async fn list_images(&self) -> Result<Vec<Image>> {
        let req = cri::ListImagesRequest { filter: None };
        let resp = self.images.clone().list_images(req).await;
        Ok(resp.map_err(call_err("ListImages"))?.into_inner().images)
    }

    async fn image_status(&self, image: &str) -> Result<Option<Image>> {
        let req = cri::ImageStatusRequest {
            image: Some(image_spec(image)),
            verbose: false,
        };
        let resp = self.images.clone().image_status(req).await;
        Ok(resp.map_err(call_err("ImageStatus"))?.into_inner().image)
    }

    async fn remove_image(&self, image: &str) -> Result<()> {
        let req = cri::RemoveImageRequest {
            image: Some(image_spec(image)),
        };
        let resp = self.images.clone().remove_image(req).await;
        resp.map_err(call_err("RemoveImage")).map(|_| ())
    }

    async fn reopen_container_log(&self, id: &str) -> Result<()> {
        let req = cri::ReopenContainerLogRequest {
            container_id: id.into(),
        };
        let resp = self.runtime.clone().reopen_container_log(req).await;
        resp.map_err(call_err("ReopenContainerLog")).map(|_| ())
    }

    async fn pull_image(
        &self,
        image: &str,
        auth: Option<AuthConfig>,
        sandbox: Option<PodSandboxConfig>,
    ) -> Result<String> {
        let req = cri::PullImageRequest {
            image: Some(image_spec(image)),
            auth,
            sandbox_config: sandbox,
        };
        let resp = self.images.clone().pull_image(req).await;
        Ok(resp.map_err(call_err("PullImage"))?.into_inner().image_ref)
    }

    async fn list_container_stats(&self) -> Result<Vec<ContainerStats>> {
        let req = cri::ListContainerStatsRequest { filter: None };
        let resp = self.runtime.clone().list_container_stats(req).await;
        Ok(resp
            .map_err(call_err("ListContainerStats"))?
            .into_inner()
            .stats)
    }

    async fn list_pod_sandbox_stats(&self) -> Result<Vec<PodSandboxStats>> {
        let req = cri::ListPodSandboxStatsRequest { filter: None };
        let resp = self.runtime.clone().list_pod_sandbox_stats(req).await;
        Ok(resp
            .map_err(call_err("ListPodSandboxStats"))?
            .into_inner()
            .stats)
    }
}

/// An image spec naming `image`.
pub fn image_spec(image: &str) -> cri::ImageSpec {
    cri::ImageSpec {
        image: image.into(),
        user_specified_image: image.into(),
        ..Default::default()
    }
}

/// A label filter on one pod's UID.
pub fn pod_filter(uid: &str) -> HashMap<String, String> {
    HashMap::from([(labels::POD_UID.to_string(), uid.to_string())])
}
