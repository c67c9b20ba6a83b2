//! The core (`""`) group, v1.

pub(crate) mod config;
pub(crate) mod container;
mod controller;
pub(crate) mod endpoints;
pub(crate) mod pod;
pub(crate) mod pod_defaults;
mod probe;
pub(crate) mod quota;
pub(crate) mod scheduling;
pub(crate) mod service;
pub(crate) mod storage;
mod volume;

use k8s_openapi::api::core::v1::Pod;

use crate::field::FieldError;
use crate::{ApiType, check_meta, check_meta_update};

impl ApiType for Pod {
    fn set_defaults(&mut self) {
        pod_defaults::default_pod(self);
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errs = check_meta(self);
        errs.extend(pod::validate_pod_create(self));
        errs
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errs = check_meta_update(self, old);
        errs.extend(pod::validate_pod_body(self));
        errs.extend(pod::mirror_annotation_update(self, old));
        let default_spec = Default::default();
        let new_spec = self.spec.as_ref().unwrap_or(&default_spec);
        let old_spec = old.spec.as_ref().unwrap_or(&default_spec);
        errs.extend(pod::validate_pod_spec_update(new_spec, old_spec));
        errs
    }
}
