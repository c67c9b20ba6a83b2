//! Upstream's validation vocabulary with upstream's exact messages: the field-error model
//! ([`Path`], [`FieldError`], [`ErrorKind`]), the string validators of
//! `k8s.io/apimachinery/pkg/util/validation` ([`is_dns1123_subdomain`], [`is_qualified_name`],
//! ...), and the `metadata` rules of `k8s.io/apimachinery/pkg/api/validation`
//! ([`validate_object_meta`], [`validate_object_meta_update`]).
//!
//! An API server turns a non-empty `Vec<FieldError>` into a 422 `Invalid` status: each error
//! becomes a `metav1.StatusCause` with `type` = [`FieldError::reason`], `field` =
//! [`FieldError::field`] and `message` = its `Display`; the status message is
//! `<Kind> "<name>" is invalid: ` followed by [`aggregate`] of the errors.

mod field;
mod meta;
mod names;

pub use field::{ErrorKind, FieldError, Path, aggregate};
pub use meta::{
    FIELD_IMMUTABLE_ERROR_MSG, FIELD_MANAGER_MAX_LENGTH, IS_NEGATIVE_ERROR_MSG,
    MAX_SUBRESOURCE_NAME_LENGTH, TOTAL_ANNOTATION_SIZE_LIMIT_B, name_is_dns_label,
    name_is_dns_subdomain, name_is_dns1035_label, validate_annotations, validate_field_manager,
    validate_finalizers, validate_immutable_field, validate_labels, validate_managed_fields,
    validate_nonnegative_field, validate_object_meta, validate_object_meta_update,
    validate_owner_references, validate_path_segment_name,
};
pub use names::{
    DNS1035_LABEL_MAX_LENGTH, DNS1123_LABEL_MAX_LENGTH, DNS1123_SUBDOMAIN_MAX_LENGTH,
    LABEL_VALUE_MAX_LENGTH, empty_error, inclusive_range_error, is_c_identifier, is_config_map_key,
    is_dns1035_label, is_dns1123_label, is_dns1123_subdomain, is_env_var_name, is_http_header_name,
    is_in_range, is_qualified_name, is_relaxed_env_var_name, is_valid_ip, is_valid_ipv4,
    is_valid_label_value, is_valid_percent, is_valid_port_name, is_valid_port_num,
    is_wildcard_dns1123_subdomain, max_len_error, regex_error,
};
