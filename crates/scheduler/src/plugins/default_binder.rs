//! DefaultBinder: binds through the `pods/binding` subresource.

use futures::future::BoxFuture;

use crate::api::{PodRef, SharedApi};
use crate::framework::{BindPlugin, CycleState, Plugin, Status};
use crate::podinfo::PodInfo;

/// The plugin's name.
pub const NAME: &str = "DefaultBinder";

/// The DefaultBinder plugin.
pub struct DefaultBinder {
    api: SharedApi,
}

impl DefaultBinder {
    /// A binder writing through `api`.
    pub fn new(api: SharedApi) -> Self {
        Self { api }
    }
}

impl Plugin for DefaultBinder {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl BindPlugin for DefaultBinder {
    fn bind<'a>(
        &'a self,
        _: &'a CycleState,
        pod: &'a PodInfo,
        node: &'a str,
    ) -> BoxFuture<'a, Status> {
        let call = self.api.bind(&PodRef::of_info(pod), node);
        Box::pin(async move {
            match call.await {
                Ok(()) => Status::success(),
                Err(e) => Status::error(e.message),
            }
        })
    }
}
