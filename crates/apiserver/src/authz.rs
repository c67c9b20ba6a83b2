//! Authorization: every authenticated request is put to an [`Authorizer`] before it is served,
//! with upstream's attributes (user, verb, resource, namespace, name, subresource, or path).
//! Today every authenticated user is allowed (as upstream's `AlwaysAllow` mode); RBAC slots in
//! as another implementation.

use k8rs_auth::authn::UserInfo;

use crate::error::ApiError;
use crate::request::RequestInfo;

/// What is being asked: a resource request, or a non-resource path such as `/healthz`.
#[derive(Debug, Clone, Copy)]
pub enum Attributes<'a> {
    Resource(&'a RequestInfo),
    NonResource { verb: &'a str, path: &'a str },
}

/// An authorizer's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Denied, with the reason told to the client.
    Deny(String),
    /// No rule applies; the next authorizer (if any) decides, and without one it is denied.
    NoOpinion,
}

pub trait Authorizer: Send + Sync {
    fn authorize(&self, user: &UserInfo, attributes: Attributes<'_>) -> Decision;
}

/// Allows every request (upstream's `--authorization-mode=AlwaysAllow`).
#[derive(Debug, Default)]
pub struct AlwaysAllow;

impl Authorizer for AlwaysAllow {
    fn authorize(&self, _user: &UserInfo, _attributes: Attributes<'_>) -> Decision {
        Decision::Allow
    }
}

/// Puts a request to the authorizer; a denial becomes upstream's 403.
pub fn check(
    authorizer: &dyn Authorizer,
    user: &UserInfo,
    attributes: Attributes<'_>,
) -> Result<(), ApiError> {
    match authorizer.authorize(user, attributes) {
        Decision::Allow => Ok(()),
        Decision::Deny(reason) => Err(forbidden(user, attributes, &reason)),
        Decision::NoOpinion => Err(forbidden(user, attributes, "")),
    }
}

/// `User "alice" cannot list resource "pods" in API group "" in the namespace "default"`.
fn forbidden(user: &UserInfo, attributes: Attributes<'_>, reason: &str) -> ApiError {
    let what = match attributes {
        Attributes::Resource(info) => {
            let resource = match &info.subresource {
                Some(sub) => format!("{}/{sub}", info.resource),
                None => info.resource.clone(),
            };
            let scope = match &info.namespace {
                Some(ns) => format!(" in the namespace \"{ns}\""),
                None => " at the cluster scope".to_string(),
            };
            format!(
                "User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\"{scope}",
                user.name, info.verb, info.group
            )
        }
        Attributes::NonResource { verb, path } => {
            format!("User \"{}\" cannot {verb} path \"{path}\"", user.name)
        }
    };
    let message = if reason.is_empty() {
        what
    } else {
        format!("{what}: {reason}")
    };
    ApiError::Forbidden {
        message,
        details: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct DenyPods;

    impl Authorizer for DenyPods {
        fn authorize(&self, _user: &UserInfo, a: Attributes<'_>) -> Decision {
            match a {
                Attributes::Resource(info) if info.resource == "pods" => {
                    Decision::Deny("no pods".into())
                }
                _ => Decision::NoOpinion,
            }
        }
    }

    #[test]
    fn denials_use_upstreams_message() {
        let user = UserInfo {
            name: "alice".into(),
            ..Default::default()
        };
        let info = RequestInfo {
            verb: "list",
            resource: "pods".into(),
            namespace: Some("default".into()),
            ..Default::default()
        };
        let err = check(&DenyPods, &user, Attributes::Resource(&info)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "User \"alice\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\": no pods"
        );
        let path = Attributes::NonResource {
            verb: "get",
            path: "/metrics",
        };
        assert!(check(&DenyPods, &user, path).is_err());
        assert!(check(&AlwaysAllow, &user, Attributes::Resource(&info)).is_ok());
    }
}
