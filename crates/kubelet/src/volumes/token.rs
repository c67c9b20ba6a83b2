//! Service-account tokens for projected volumes, as upstream's token manager: requested through
//! `serviceaccounts/<name>/token` bound to the pod, cached, and requested again once 80% of
//! their life has passed or they are older than 24 hours.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{Api, PostParams};

/// A token and its life.
#[derive(Clone, Debug)]
pub struct Token {
    pub token: String,
    pub issued: DateTime<Utc>,
    pub expires: DateTime<Utc>,
}

/// Whether `t` must be requested again at `now` (upstream's `requiresRefresh`).
pub fn needs_refresh(t: &Token, now: DateTime<Utc>) -> bool {
    if now >= t.expires {
        return true;
    }
    let life = t.expires - t.issued;
    let refresh_at = t.issued + life * 4 / 5;
    now >= refresh_at || now - t.issued > Duration::hours(24)
}

/// The tokens of one pod by `(audience, expirationSeconds)`.
#[derive(Debug, Default)]
pub struct Tokens {
    cache: HashMap<(String, i64), Token>,
}

impl Tokens {
    /// A fresh token for `key`, from the cache or a new TokenRequest.
    pub async fn get(
        &mut self,
        client: &kube::Client,
        pod: &Pod,
        key: &(String, i64),
    ) -> Result<String, String> {
        let now = Utc::now();
        if let Some(t) = self.cache.get(key).filter(|t| !needs_refresh(t, now)) {
            return Ok(t.token.clone());
        }
        let t = request(client, pod, key).await?;
        let token = t.token.clone();
        self.cache.insert(key.clone(), t);
        Ok(token)
    }
}

async fn request(client: &kube::Client, pod: &Pod, key: &(String, i64)) -> Result<Token, String> {
    let m = &pod.metadata;
    let ns = m.namespace.as_deref().unwrap_or("default");
    let sa = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into());
    let req = TokenRequest {
        spec: TokenRequestSpec {
            audiences: if key.0.is_empty() {
                Vec::new()
            } else {
                vec![key.0.clone()]
            },
            expiration_seconds: Some(key.1),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: m.name.clone(),
                uid: m.uid.clone(),
            }),
        },
        ..Default::default()
    };
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let now = Utc::now();
    let got = api
        .create_token_request(&sa, &PostParams::default(), &req)
        .await
        .map_err(|e| format!("failed to fetch token: {e}"))?;
    let st = got.status.ok_or("failed to fetch token: no status")?;
    let expires = DateTime::<Utc>::from_timestamp(st.expiration_timestamp.0.as_second(), 0)
        .unwrap_or(now + Duration::seconds(key.1));
    Ok(Token {
        token: st.token,
        issued: now,
        expires,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_after_80_percent_or_a_day() {
        let t0 = Utc::now();
        let t = Token {
            token: "x".into(),
            issued: t0,
            expires: t0 + Duration::seconds(1000),
        };
        assert!(!needs_refresh(&t, t0 + Duration::seconds(799)));
        assert!(needs_refresh(&t, t0 + Duration::seconds(800)));
        assert!(needs_refresh(&t, t0 + Duration::seconds(2000)));
        let long = Token {
            expires: t0 + Duration::days(7),
            ..t
        };
        assert!(!needs_refresh(&long, t0 + Duration::hours(23)));
        assert!(needs_refresh(&long, t0 + Duration::hours(25)));
    }
}
