//! Just enough DER to give certificates the subject Kubernetes needs.
//!
//! rcgen keeps at most one value per attribute type in a subject, but Kubernetes client
//! certificates carry one `O` per group and a CSR's subject must be copied as it is. So rcgen
//! issues the certificate with a placeholder subject, and [`replace_subject`] swaps in the real
//! subject's DER and signs the result again with the CA key.

use crate::error::{Error, Result};

const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
const TAG_UTF8_STRING: u8 = 0x0c;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_VERSION: u8 = 0xa0;
/// DER of the OID 2.5.4.3 (commonName).
const OID_COMMON_NAME: &[u8] = &[0x06, 0x03, 0x55, 0x04, 0x03];
/// DER of the OID 2.5.4.10 (organizationName).
const OID_ORGANIZATION: &[u8] = &[0x06, 0x03, 0x55, 0x04, 0x0a];

/// One parsed tag-length-value.
struct Tlv<'a> {
    tag: u8,
    /// The whole encoding, header included.
    whole: &'a [u8],
    content: &'a [u8],
}

/// Encodes one tag-length-value.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// Splits the first tag-length-value off `input` (single-byte tags, definite lengths only).
fn split_tlv(input: &[u8]) -> Result<(Tlv<'_>, &[u8])> {
    let bad = || Error::ParseCertificate {
        what: "issued certificate".into(),
        reason: "malformed DER".into(),
    };
    let (&tag, rest) = input.split_first().ok_or_else(bad)?;
    let (&first, rest) = rest.split_first().ok_or_else(bad)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > std::mem::size_of::<usize>() || rest.len() < n {
            return Err(bad());
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, 2 + n)
    };
    let total = header.checked_add(len).ok_or_else(bad)?;
    if input.len() < total {
        return Err(bad());
    }
    let tlv = Tlv {
        tag,
        whole: &input[..total],
        content: &input[header..total],
    };
    Ok((tlv, &input[total..]))
}

/// All tag-length-values inside `content`.
fn children(mut content: &[u8]) -> Result<Vec<Tlv<'_>>> {
    let mut out = Vec::new();
    while !content.is_empty() {
        let (child, rest) = split_tlv(content)?;
        out.push(child);
        content = rest;
    }
    Ok(out)
}

/// The DER of a subject name with one `O` per organization, then the `CN`, in the order Go's
/// `pkix.Name` writes them, all as UTF8String.
pub(crate) fn subject_name(common_name: &str, organizations: &[String]) -> Vec<u8> {
    let rdn = |oid: &[u8], value: &str| {
        let mut atv = oid.to_vec();
        atv.extend(tlv(TAG_UTF8_STRING, value.as_bytes()));
        tlv(TAG_SET, &tlv(TAG_SEQUENCE, &atv))
    };
    let mut content = Vec::new();
    for org in organizations {
        content.extend(rdn(OID_ORGANIZATION, org));
    }
    if !common_name.is_empty() {
        content.extend(rdn(OID_COMMON_NAME, common_name));
    }
    tlv(TAG_SEQUENCE, &content)
}

/// Replaces the subject of the certificate `cert_der` with `subject_der` and signs it again with
/// `signer` (which must be the key that signed it, so the signature algorithm stays right).
pub(crate) fn replace_subject(
    cert_der: &[u8],
    subject_der: &[u8],
    signer: &impl rcgen::SigningKey,
) -> Result<Vec<u8>> {
    let (cert, _) = split_tlv(cert_der)?;
    let parts = children(cert.content)?;
    let [tbs, algorithm, _signature] = parts.as_slice() else {
        return Err(malformed("certificate is not tbs, algorithm, signature"));
    };
    let fields = children(tbs.content)?;
    let subject_index = match fields.first() {
        Some(first) if first.tag == TAG_VERSION => 5,
        _ => 4,
    };
    if fields.len() <= subject_index || fields[subject_index].tag != TAG_SEQUENCE {
        return Err(malformed("certificate has no subject"));
    }
    let mut tbs_content = Vec::with_capacity(tbs.content.len() + subject_der.len());
    for (i, field) in fields.iter().enumerate() {
        let bytes = if i == subject_index {
            subject_der
        } else {
            field.whole
        };
        tbs_content.extend_from_slice(bytes);
    }
    let new_tbs = tlv(TAG_SEQUENCE, &tbs_content);
    let signature = signer.sign(&new_tbs).map_err(|e| Error::IssueCertificate {
        what: "certificate".into(),
        reason: e.to_string(),
    })?;
    let mut bit_string = vec![0u8];
    bit_string.extend(signature);
    let mut out = new_tbs;
    out.extend_from_slice(algorithm.whole);
    out.extend(tlv(TAG_BIT_STRING, &bit_string));
    Ok(tlv(TAG_SEQUENCE, &out))
}

fn malformed(reason: &str) -> Error {
    Error::IssueCertificate {
        what: "certificate".into(),
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lengths_round_trip() {
        for len in [0usize, 1, 127, 128, 255, 256, 70_000] {
            let content = vec![7u8; len];
            let encoded = tlv(TAG_SEQUENCE, &content);
            let (parsed, rest) = split_tlv(&encoded).unwrap();
            assert!(rest.is_empty());
            assert_eq!(parsed.content.len(), len);
        }
    }

    #[test]
    fn truncated_input_is_an_error() {
        let encoded = tlv(TAG_SEQUENCE, &[1, 2, 3]);
        assert!(split_tlv(&encoded[..3]).is_err());
        assert!(split_tlv(&[0x30, 0x85, 1, 2, 3, 4, 5]).is_err());
        assert!(split_tlv(&[]).is_err());
    }

    #[test]
    fn subject_name_parses_back_with_every_organization() {
        use x509_parser::prelude::FromDer;
        let der = subject_name("bob", &["dev".into(), "ops".into()]);
        let (_, name) = x509_parser::x509::X509Name::from_der(&der).unwrap();
        let orgs: Vec<_> = name
            .iter_organization()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(orgs, ["dev", "ops"]);
        let cn = name.iter_common_name().next().unwrap().as_str().unwrap();
        assert_eq!(cn, "bob");
    }
}
