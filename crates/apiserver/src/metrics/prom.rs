//! Reading the kubelet's `/metrics/resource` into points: the format is
//! [`k8rs_resourcemetrics`]'s, shared with the kubelets that render it.

pub use k8rs_resourcemetrics::{ParseError, Point, Scrape, Usage, parse};
