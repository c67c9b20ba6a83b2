//! Bound service-account tokens, as upstream's TokenRequest issues them: ES256 JWTs with a `kid`
//! derived from the public key, the standard claims and the private `kubernetes.io` claim.
//!
//! [`TokenIssuer::verify`] checks what can be checked from the token alone: issuer, signature,
//! time window and audience. Checking that the bound service account, pod, secret or node still
//! exists with the same UID is the API server's job (it has the store).

mod claims;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rcgen::{KeyPair, PublicKeyData as _};
use serde::{Deserialize, Serialize};

pub use claims::{
    Audiences, KubernetesClaims, NODE_NAME_KEY, NODE_UID_KEY, ObjectRef, POD_NAME_KEY, POD_UID_KEY,
    SERVICE_ACCOUNTS_GROUP, ServiceAccountClaims, service_account_username,
};

use crate::authn::UserInfo;
use crate::error::{Error, Result};

/// The issuer (and default audience) of service-account tokens, as k3s sets it.
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// The expiration kubelet asks for when it accepts a token valid longer than asked for;
/// upstream then extends the token by [`EXPIRATION_EXTENSION_SECONDS`] and sets `warnafter`.
pub const WARN_ONLY_BOUND_TOKEN_EXPIRATION_SECONDS: i64 = 60 * 60 + 7;
/// How far upstream extends such a token's expiration.
pub const EXPIRATION_EXTENSION_SECONDS: i64 = 24 * 365 * 60 * 60;
/// Allowed clock skew when checking `exp`, `nbf` and `iat` (go-jose's default leeway).
pub const LEEWAY_SECONDS: i64 = 60;

/// What a token is requested for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenRequestClaims {
    pub namespace: String,
    pub service_account_name: String,
    pub service_account_uid: String,
    /// Must not be empty (the API server defaults it to its own audiences).
    pub audiences: Vec<String>,
    /// Must be positive.
    pub expiration_seconds: i64,
    pub bound_pod: Option<ObjectRef>,
    pub bound_secret: Option<ObjectRef>,
    /// The node a token is bound to, or the node of the bound pod.
    pub bound_node: Option<ObjectRef>,
    /// If set, `warnafter` is this many seconds after issuance.
    pub warn_after_seconds: Option<i64>,
}

/// A token that verified: its claims and the user it authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    pub claims: ServiceAccountClaims,
    pub user: UserInfo,
}

/// One public key in JWK form, fields in the order upstream writes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    #[serde(rename = "use")]
    pub use_: String,
    pub kty: String,
    pub kid: String,
    pub crv: String,
    pub alg: String,
    pub x: String,
    pub y: String,
}

/// A JWK set, as served at `/openid/v1/jwks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

/// Issues and verifies service-account tokens with one ECDSA P-256 key.
pub struct TokenIssuer {
    issuer: String,
    key_id: String,
    encoding_key: EncodingKey,
    decoding_key: DecodingKey,
    /// Uncompressed point: 0x04 || X || Y.
    public_point: Vec<u8>,
    public_key_pem: String,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("issuer", &self.issuer)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl TokenIssuer {
    /// A token issuer signing with `signing_key_pem` (PKCS#8 ECDSA P-256, as
    /// [`crate::pki::ClusterPki::service_account_key_pem`]) and naming `issuer` in `iss`.
    pub fn new(signing_key_pem: &str, issuer: impl Into<String>) -> Result<TokenIssuer> {
        let key =
            KeyPair::from_pem(signing_key_pem).map_err(|e| Error::LoadSigningKey(e.to_string()))?;
        if key.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
            return Err(Error::LoadSigningKey("not an ECDSA P-256 key".into()));
        }
        let public_point = key.public_key_raw().to_vec();
        Ok(TokenIssuer {
            issuer: issuer.into(),
            key_id: key_id(&key.subject_public_key_info()),
            encoding_key: EncodingKey::from_ec_der(&key.serialize_der()),
            decoding_key: DecodingKey::from_ec_der(&public_point),
            public_point,
            public_key_pem: key.public_key_pem(),
        })
    }

    /// The `iss` this issuer writes and accepts.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The `kid` of the signing key.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The public key, PEM (SubjectPublicKeyInfo).
    pub fn public_key_pem(&self) -> &str {
        &self.public_key_pem
    }

    /// The public key as a JWK set.
    pub fn jwks(&self) -> Jwks {
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let (x, y) = self.public_point[1..].split_at(32);
        Jwks {
            keys: vec![Jwk {
                use_: "sig".into(),
                kty: "EC".into(),
                kid: self.key_id.clone(),
                crv: "P-256".into(),
                alg: "ES256".into(),
                x: b64(x),
                y: b64(y),
            }],
        }
    }

    /// Issues a token; returns it with its expiration time.
    pub fn issue(
        &self,
        request: &TokenRequestClaims,
        now: DateTime<Utc>,
    ) -> Result<(String, DateTime<Utc>)> {
        let claims = self.claims_for(request, now)?;
        let expiration = DateTime::from_timestamp(claims.exp, 0)
            .ok_or_else(|| Error::InvalidTokenRequest("expiration out of range".into()))?;
        let mut header = Header::new(Algorithm::ES256);
        header.typ = None;
        header.kid = Some(self.key_id.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.encoding_key)
            .map_err(|e| Error::SignToken(e.to_string()))?;
        Ok((token, expiration))
    }

    fn claims_for(
        &self,
        request: &TokenRequestClaims,
        now: DateTime<Utc>,
    ) -> Result<ServiceAccountClaims> {
        let invalid = |m: &str| Err(Error::InvalidTokenRequest(m.to_owned()));
        if request.namespace.is_empty() || request.service_account_name.is_empty() {
            return invalid("namespace and service account name are required");
        }
        if request.audiences.is_empty() {
            return invalid("at least one audience is required");
        }
        if request.expiration_seconds <= 0 {
            return invalid("expiration seconds must be positive");
        }
        let iat = now.timestamp();
        let after = |secs: i64| {
            iat.checked_add(secs)
                .ok_or_else(|| Error::InvalidTokenRequest("expiration out of range".into()))
        };
        Ok(ServiceAccountClaims {
            aud: Audiences(request.audiences.clone()),
            exp: after(request.expiration_seconds)?,
            iat,
            iss: self.issuer.clone(),
            jti: uuid::Uuid::new_v4().to_string(),
            kubernetes: KubernetesClaims {
                namespace: request.namespace.clone(),
                node: request.bound_node.clone(),
                pod: request.bound_pod.clone(),
                secret: request.bound_secret.clone(),
                serviceaccount: ObjectRef::new(
                    &request.service_account_name,
                    &request.service_account_uid,
                ),
                warnafter: request.warn_after_seconds.map(after).transpose()?,
            },
            nbf: iat,
            sub: service_account_username(&request.namespace, &request.service_account_name),
        })
    }

    /// Verifies a bearer token: issuer (checked first, as upstream: a token of another issuer
    /// gives [`Error::TokenWrongIssuer`]), signature, `exp`/`nbf`/`iat` with
    /// [`LEEWAY_SECONDS`] of skew, and that its audiences intersect `expected_audiences` (so
    /// an empty `expected_audiences` accepts nothing; pass the API server's `--api-audiences`,
    /// by default `[DEFAULT_ISSUER]`).
    pub fn verify(
        &self,
        token: &str,
        expected_audiences: &[String],
        now: DateTime<Utc>,
    ) -> Result<VerifiedToken> {
        self.check_issuer(token)?;
        let claims = self.check_signature(token)?;
        check_times(&claims, now.timestamp())?;
        check_audiences(&claims.aud, expected_audiences)?;
        let k = &claims.kubernetes;
        if k.namespace.is_empty() || k.serviceaccount.name.is_empty() {
            return Err(Error::TokenMalformed(
                "no namespace or service account in claims".into(),
            ));
        }
        let user = claims.user_info();
        Ok(VerifiedToken { claims, user })
    }

    fn check_issuer(&self, token: &str) -> Result<()> {
        #[derive(Deserialize)]
        struct IssuerOnly {
            #[serde(default)]
            iss: String,
        }
        let unverified: IssuerOnly = jsonwebtoken::dangerous::insecure_decode_claims(token)
            .map_err(|e| Error::TokenMalformed(e.to_string()))?;
        if unverified.iss != self.issuer {
            return Err(Error::TokenWrongIssuer(unverified.iss));
        }
        Ok(())
    }

    fn check_signature(&self, token: &str) -> Result<ServiceAccountClaims> {
        let mut validation = Validation::new(Algorithm::ES256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let data =
            jsonwebtoken::decode::<ServiceAccountClaims>(token, &self.decoding_key, &validation)
                .map_err(|e| match e.kind() {
                    ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => {
                        Error::TokenSignatureInvalid
                    }
                    _ => Error::TokenMalformed(e.to_string()),
                })?;
        Ok(data.claims)
    }
}

fn check_times(claims: &ServiceAccountClaims, now: i64) -> Result<()> {
    if now.saturating_sub(LEEWAY_SECONDS) > claims.exp {
        return Err(Error::TokenExpired);
    }
    if now.saturating_add(LEEWAY_SECONDS) < claims.nbf {
        return Err(Error::TokenNotYetValid);
    }
    if now.saturating_add(LEEWAY_SECONDS) < claims.iat {
        return Err(Error::TokenIssuedInFuture);
    }
    Ok(())
}

fn check_audiences(token: &Audiences, expected: &[String]) -> Result<()> {
    if token.0.iter().any(|a| expected.contains(a)) {
        return Ok(());
    }
    Err(Error::TokenAudienceMismatch {
        token: go_quoted_list(&token.0),
        expected: go_quoted_list(expected),
    })
}

/// A list formatted as Go's `%q` formats a `[]string`: `["a" "b"]`.
fn go_quoted_list(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| serde_json::Value::String(s.clone()).to_string())
        .collect();
    format!("[{}]", quoted.join(" "))
}

/// Upstream's key id: unpadded base64url of the SHA-256 of the DER SubjectPublicKeyInfo.
fn key_id(spki_der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, spki_der);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
}

#[cfg(test)]
mod tests;
