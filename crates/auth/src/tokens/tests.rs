use chrono::TimeZone as _;

use super::*;
use crate::authn::CREDENTIAL_ID_KEY;

fn issuer() -> TokenIssuer {
    let key = KeyPair::generate().unwrap();
    TokenIssuer::new(&key.serialize_pem(), DEFAULT_ISSUER).unwrap()
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).unwrap()
}

fn auds() -> Vec<String> {
    vec![DEFAULT_ISSUER.to_owned(), "k3s".to_owned()]
}

fn request() -> TokenRequestClaims {
    TokenRequestClaims {
        namespace: "default".into(),
        service_account_name: "builder".into(),
        service_account_uid: "sa-uid".into(),
        audiences: auds(),
        expiration_seconds: 3600,
        bound_pod: Some(ObjectRef::new("web-0", "pod-uid")),
        bound_node: Some(ObjectRef::new("node1", "node-uid")),
        ..TokenRequestClaims::default()
    }
}

fn b64_json(part: &str) -> serde_json::Value {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[test]
fn issued_token_verifies_to_the_service_account_user() {
    let iss = issuer();
    let (token, exp) = iss.issue(&request(), now()).unwrap();
    assert_eq!(exp.timestamp(), now().timestamp() + 3600);

    let verified = iss.verify(&token, &["k3s".into()], now()).unwrap();
    let user = &verified.user;
    assert_eq!(user.name, "system:serviceaccount:default:builder");
    assert_eq!(user.uid, "sa-uid");
    assert_eq!(
        user.groups,
        [
            "system:serviceaccounts",
            "system:serviceaccounts:default",
            "system:authenticated"
        ]
    );
    assert_eq!(user.extra[POD_NAME_KEY], ["web-0"]);
    assert_eq!(user.extra[POD_UID_KEY], ["pod-uid"]);
    assert_eq!(user.extra[NODE_NAME_KEY], ["node1"]);
    assert_eq!(user.extra[NODE_UID_KEY], ["node-uid"]);
    let jti = &verified.claims.jti;
    assert_eq!(jti.len(), 36, "uuid: {jti}");
    assert_eq!(user.extra[CREDENTIAL_ID_KEY], [format!("JTI={jti}")]);
}

#[test]
fn token_has_upstream_header_and_claims() {
    let iss = issuer();
    let mut req = request();
    req.warn_after_seconds = Some(WARN_ONLY_BOUND_TOKEN_EXPIRATION_SECONDS);
    let (token, _) = iss.issue(&req, now()).unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header = b64_json(parts[0]);
    assert_eq!(
        header,
        serde_json::json!({"alg": "ES256", "kid": iss.key_id()})
    );
    let claims = b64_json(parts[1]);
    let t = now().timestamp();
    assert_eq!(claims["iss"], DEFAULT_ISSUER);
    assert_eq!(claims["sub"], "system:serviceaccount:default:builder");
    assert_eq!(claims["aud"], serde_json::json!(auds()));
    assert_eq!(claims["iat"], t);
    assert_eq!(claims["nbf"], t);
    assert_eq!(claims["exp"], t + 3600);
    assert_eq!(
        claims["kubernetes.io"],
        serde_json::json!({
            "namespace": "default",
            "node": {"name": "node1", "uid": "node-uid"},
            "pod": {"name": "web-0", "uid": "pod-uid"},
            "serviceaccount": {"name": "builder", "uid": "sa-uid"},
            "warnafter": t + WARN_ONLY_BOUND_TOKEN_EXPIRATION_SECONDS,
        })
    );
    // Keys in go-jose's (alphabetical) order.
    let raw = String::from_utf8(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .unwrap(),
    )
    .unwrap();
    let order: Vec<usize> = [
        "\"aud\"", "\"exp\"", "\"iat\"", "\"iss\"", "\"jti\"", "\"nbf\"",
    ]
    .iter()
    .map(|k| raw.find(k).unwrap())
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{raw}");
}

#[test]
fn single_audience_is_a_string() {
    let iss = issuer();
    let mut req = request();
    req.audiences = vec!["vault".into()];
    let (token, _) = iss.issue(&req, now()).unwrap();
    let claims = b64_json(token.split('.').nth(1).unwrap());
    assert_eq!(claims["aud"], "vault");
    iss.verify(&token, &["vault".into()], now()).unwrap();
}

#[test]
fn expired_token_is_rejected_after_the_leeway() {
    let iss = issuer();
    let (token, exp) = iss.issue(&request(), now()).unwrap();
    let within = exp + chrono::Duration::seconds(LEEWAY_SECONDS - 1);
    iss.verify(&token, &auds(), within).unwrap();
    let after = exp + chrono::Duration::seconds(LEEWAY_SECONDS + 1);
    let err = iss.verify(&token, &auds(), after).unwrap_err();
    assert!(matches!(err, Error::TokenExpired), "{err}");
    assert_eq!(err.to_string(), "service account token has expired");
}

#[test]
fn token_from_the_future_is_rejected() {
    let iss = issuer();
    let (token, _) = iss.issue(&request(), now()).unwrap();
    let before = now() - chrono::Duration::seconds(LEEWAY_SECONDS + 1);
    let err = iss.verify(&token, &auds(), before).unwrap_err();
    assert!(matches!(err, Error::TokenNotYetValid), "{err}");
}

#[test]
fn wrong_audience_is_rejected() {
    let iss = issuer();
    let (token, _) = iss.issue(&request(), now()).unwrap();
    let err = iss.verify(&token, &["other".into()], now()).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"token audiences ["https://kubernetes.default.svc.cluster.local" "k3s"] is invalid for the target audiences ["other"]"#
    );
    assert!(iss.verify(&token, &[], now()).is_err());
}

#[test]
fn tampered_token_is_rejected() {
    let iss = issuer();
    let (token, _) = iss.issue(&request(), now()).unwrap();
    let parts: Vec<&str> = token.split('.').collect();

    // Claims changed, signature kept.
    let mut claims = b64_json(parts[1]);
    claims["kubernetes.io"]["serviceaccount"]["name"] = "admin".into();
    let forged_claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&claims).unwrap());
    let forged = format!("{}.{}.{}", parts[0], forged_claims, parts[2]);
    let err = iss.verify(&forged, &auds(), now()).unwrap_err();
    assert!(matches!(err, Error::TokenSignatureInvalid), "{err}");

    // Signature changed.
    let mut sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(parts[2])
        .unwrap();
    sig[10] ^= 0xff;
    let resigned = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig)
    );
    let err = iss.verify(&resigned, &auds(), now()).unwrap_err();
    assert!(matches!(err, Error::TokenSignatureInvalid), "{err}");
}

#[test]
fn token_of_another_key_or_issuer_is_rejected() {
    let ours = issuer();
    let (theirs_token, _) = issuer().issue(&request(), now()).unwrap();
    let err = ours.verify(&theirs_token, &auds(), now()).unwrap_err();
    assert!(matches!(err, Error::TokenSignatureInvalid), "{err}");

    let key = KeyPair::generate().unwrap();
    let other = TokenIssuer::new(&key.serialize_pem(), "https://elsewhere").unwrap();
    let (token, _) = other.issue(&request(), now()).unwrap();
    let err = ours.verify(&token, &auds(), now()).unwrap_err();
    assert!(matches!(err, Error::TokenWrongIssuer(ref i) if i == "https://elsewhere"));
}

#[test]
fn hmac_token_with_our_issuer_is_rejected() {
    let ours = issuer();
    let claims = ours.claims_for(&request(), now()).unwrap();
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(ours.public_key_pem().as_bytes()),
    )
    .unwrap();
    let err = ours.verify(&token, &auds(), now()).unwrap_err();
    assert!(matches!(err, Error::TokenSignatureInvalid), "{err}");
}

#[test]
fn garbage_is_malformed() {
    let iss = issuer();
    for junk in ["", "abc", "a.b.c", "....", "Bearer x"] {
        let err = iss.verify(junk, &auds(), now()).unwrap_err();
        assert!(matches!(err, Error::TokenMalformed(_)), "{junk}: {err}");
    }
}

#[test]
fn invalid_requests_are_refused() {
    let iss = issuer();
    let cases = [
        TokenRequestClaims {
            expiration_seconds: 0,
            ..request()
        },
        TokenRequestClaims {
            audiences: vec![],
            ..request()
        },
        TokenRequestClaims {
            namespace: String::new(),
            ..request()
        },
        TokenRequestClaims {
            expiration_seconds: i64::MAX,
            ..request()
        },
    ];
    for case in cases {
        let err = iss.issue(&case, now()).unwrap_err();
        assert!(matches!(err, Error::InvalidTokenRequest(_)), "{err}");
    }
}

#[test]
fn jwks_verifies_issued_tokens() {
    let iss = issuer();
    let jwks = iss.jwks();
    let json = serde_json::to_string(&jwks).unwrap();
    assert!(
        json.starts_with(r#"{"keys":[{"use":"sig","kty":"EC","kid":""#),
        "{json}"
    );
    assert_eq!(iss.key_id().len(), 43);

    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&json).unwrap();
    let jwk = set.find(iss.key_id()).unwrap();
    let key = DecodingKey::from_jwk(jwk).unwrap();
    let (token, _) = iss.issue(&request(), now()).unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.validate_exp = false;
    validation.set_audience(&["k3s"]);
    jsonwebtoken::decode::<serde_json::Value>(&token, &key, &validation).unwrap();
}

#[test]
fn non_p256_key_is_refused() {
    let ed = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let err = TokenIssuer::new(&ed.serialize_pem(), DEFAULT_ISSUER).unwrap_err();
    assert!(matches!(err, Error::LoadSigningKey(_)), "{err}");
    assert!(TokenIssuer::new("junk", DEFAULT_ISSUER).is_err());
}

#[test]
fn token_issuer_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<TokenIssuer>();
}
