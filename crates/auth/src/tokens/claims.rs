//! The claims of a bound service-account token, shaped as upstream serializes them (keys in
//! alphabetical order, as go-jose writes them), and the user they authenticate.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::authn::{CREDENTIAL_ID_KEY, UserInfo};

/// `extra` key: the name of the pod a token is bound to.
pub const POD_NAME_KEY: &str = "authentication.kubernetes.io/pod-name";
/// `extra` key: the UID of the pod a token is bound to.
pub const POD_UID_KEY: &str = "authentication.kubernetes.io/pod-uid";
/// `extra` key: the name of the node a token is bound to (or its pod runs on).
pub const NODE_NAME_KEY: &str = "authentication.kubernetes.io/node-name";
/// `extra` key: the UID of that node.
pub const NODE_UID_KEY: &str = "authentication.kubernetes.io/node-uid";
/// The group of every service account.
pub const SERVICE_ACCOUNTS_GROUP: &str = "system:serviceaccounts";

/// `system:serviceaccount:<namespace>:<name>`.
pub fn service_account_username(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// A reference to a bound object (`{name, uid}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
}

impl ObjectRef {
    pub fn new(name: impl Into<String>, uid: impl Into<String>) -> ObjectRef {
        ObjectRef {
            name: name.into(),
            uid: uid.into(),
        }
    }
}

/// The private `kubernetes.io` claim.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaims {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<ObjectRef>,
    #[serde(default)]
    pub serviceaccount: ObjectRef,
    /// Unix seconds after which use of the token is logged as stale (set on tokens whose
    /// expiration was extended, see [`super::EXPIRATION_EXTENSION_SECONDS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warnafter: Option<i64>,
}

/// All claims of a service-account token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAccountClaims {
    pub aud: Audiences,
    pub exp: i64,
    pub iat: i64,
    pub iss: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub jti: String,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaims,
    pub nbf: i64,
    pub sub: String,
}

impl ServiceAccountClaims {
    /// The user these claims authenticate, as upstream's `ServiceAccountInfo.UserInfo()` plus
    /// `system:authenticated`.
    pub fn user_info(&self) -> UserInfo {
        let k = &self.kubernetes;
        let mut user = UserInfo {
            name: service_account_username(&k.namespace, &k.serviceaccount.name),
            uid: k.serviceaccount.uid.clone(),
            groups: vec![
                SERVICE_ACCOUNTS_GROUP.to_owned(),
                format!("{SERVICE_ACCOUNTS_GROUP}:{}", k.namespace),
            ],
            ..UserInfo::default()
        };
        let mut put = |key: &str, value: &str| {
            user.extra.insert(key.to_owned(), vec![value.to_owned()]);
        };
        if let Some(pod) = k
            .pod
            .as_ref()
            .filter(|p| !p.name.is_empty() && !p.uid.is_empty())
        {
            put(POD_NAME_KEY, &pod.name);
            put(POD_UID_KEY, &pod.uid);
        }
        if !self.jti.is_empty() {
            put(CREDENTIAL_ID_KEY, &format!("JTI={}", self.jti));
        }
        if let Some(node) = k.node.as_ref().filter(|n| !n.name.is_empty()) {
            put(NODE_NAME_KEY, &node.name);
            if !node.uid.is_empty() {
                put(NODE_UID_KEY, &node.uid);
            }
        }
        user.add_authenticated_group();
        user
    }
}

/// The `aud` claim: written as a string when there is one audience and as an array otherwise
/// (as go-jose does); read in either form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Audiences(pub Vec<String>);

impl Serialize for Audiences {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => serializer.serialize_str(one),
            many => many.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Audiences {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        Ok(match OneOrMany::deserialize(deserializer)? {
            OneOrMany::One(s) => Audiences(vec![s]),
            OneOrMany::Many(v) => Audiences(v),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audiences_round_trip_in_both_forms() {
        let one = Audiences(vec!["a".into()]);
        assert_eq!(serde_json::to_string(&one).unwrap(), "\"a\"");
        let two = Audiences(vec!["a".into(), "b".into()]);
        assert_eq!(serde_json::to_string(&two).unwrap(), "[\"a\",\"b\"]");
        let back: Audiences = serde_json::from_str("[\"a\"]").unwrap();
        assert_eq!(back, one);
        let back: Audiences = serde_json::from_str("\"a\"").unwrap();
        assert_eq!(back, one);
        assert!(serde_json::from_str::<Audiences>("3").is_err());
    }

    #[test]
    fn kubernetes_claim_has_upstream_shape() {
        let k = KubernetesClaims {
            namespace: "default".into(),
            node: Some(ObjectRef::new("n1", "nu")),
            pod: Some(ObjectRef::new("p", "pu")),
            secret: None,
            serviceaccount: ObjectRef::new("sa", "su"),
            warnafter: None,
        };
        assert_eq!(
            serde_json::to_string(&k).unwrap(),
            r#"{"namespace":"default","node":{"name":"n1","uid":"nu"},"pod":{"name":"p","uid":"pu"},"serviceaccount":{"name":"sa","uid":"su"}}"#
        );
    }
}
