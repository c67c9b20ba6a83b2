//! A gRPC channel to a CRI socket.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{VersionRequest, VersionResponse};
use tonic::transport::{Channel, Endpoint, Uri};

use crate::Error;

/// Connects to the CRI (or any gRPC service) listening on the unix socket `socket`.
pub async fn connect(socket: &Path) -> Result<Channel, Error> {
    let path: PathBuf = socket.to_path_buf();
    // The URI is ignored by the connector; it only has to parse.
    let endpoint = Endpoint::from_static("http://localhost");
    endpoint
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await
        .map_err(|source| Error::Connect {
            socket: socket.to_path_buf(),
            source,
        })
}

/// The CRI `Version` call: answers once the runtime's CRI plugin is serving.
pub async fn version(channel: Channel) -> Result<VersionResponse, Error> {
    RuntimeServiceClient::new(channel)
        .version(VersionRequest {
            version: "v1".to_string(),
        })
        .await
        .map(tonic::Response::into_inner)
        .map_err(|source| Error::Cri {
            call: "Version",
            source,
        })
}
