//! In-process clients: the control-plane components that run inside `k8rs server` talk to the
//! API server through the same handler stack as remote clients (authentication included), but
//! without TCP or TLS.

use std::convert::Infallible;
use std::sync::Arc;

use crate::ApiServer;
use k8rs_auth::authn::UserInfo;

/// A kube client whose requests are served by `api` as `user`.
pub fn client(api: Arc<ApiServer>, user: &str, groups: &[&str]) -> kube::Client {
    let mut groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    groups.push("system:authenticated".into());
    let user = Arc::new(UserInfo {
        name: user.to_string(),
        groups,
        ..Default::default()
    });
    let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
        let api = api.clone();
        let user = user.clone();
        async move {
            let req = req.map(axum::body::Body::new);
            Ok::<_, Infallible>(crate::server::handle(api, Some(user), req).await)
        }
    });
    kube::Client::new(service, "default")
}
