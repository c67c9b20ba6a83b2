//! Image names as a container runtime reports them: normalized references
//! (`nginx` -> `docker.io/library/nginx:latest`), and a stable fake digest per image, so a pod's
//! `imageID` and the node's `status.images` agree without pulling anything.

use serde_json::{Value, json};

/// Images a hollow node lists when the configuration names none.
pub const DEFAULT_IMAGES: &[&str] = &[
    "registry.k8s.io/pause:3.10",
    "docker.io/library/busybox:1.36",
    "docker.io/library/nginx:1.27",
    "registry.k8s.io/e2e-test-images/agnhost:2.53",
];

/// The reference a runtime reports for `image`: registry, repository and tag (or digest).
pub fn normalize(image: &str) -> String {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let (first, rest) = name.split_once('/').unwrap_or(("", name));
    let has_registry =
        !first.is_empty() && (first.contains('.') || first.contains(':') || first == "localhost");
    let full = match (has_registry, first.is_empty()) {
        (true, _) => name.to_string(),
        (false, true) => format!("docker.io/library/{rest}"),
        (false, false) => format!("docker.io/{name}"),
    };
    let last = full.rsplit('/').next().unwrap_or_default();
    match digest {
        Some(d) => format!("{full}@{d}"),
        None if last.contains(':') => full,
        None => format!("{full}:latest"),
    }
}

/// The repository of a normalized reference (no tag, no digest).
fn repository(normalized: &str) -> &str {
    let name = normalized.split('@').next().unwrap_or(normalized);
    match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => &name[..i],
        _ => name,
    }
}

/// `repository@sha256:<digest>`, as containerd reports `imageID`.
pub fn image_id(image: &str) -> String {
    let normalized = normalize(image);
    if let Some((repo, digest)) = normalized.split_once('@') {
        return format!("{}@{digest}", repository(repo));
    }
    format!("{}@sha256:{}", repository(&normalized), digest(&normalized))
}

/// The node's `status.images` entries for `images`.
pub fn node_images(images: &[String]) -> Value {
    let list: Vec<Value> = images
        .iter()
        .map(|image| {
            let normalized = normalize(image);
            let size = 1_000_000 + fnv(&normalized, 7) % 300_000_000;
            json!({"names": [image_id(image), normalized], "sizeBytes": size})
        })
        .collect();
    Value::Array(list)
}

/// 64 hex digits derived from `s`: stable across runs and processes.
pub fn digest(s: &str) -> String {
    (0..4u64)
        .map(|seed| format!("{:016x}", fnv(s, seed)))
        .collect()
}

/// FNV-1a, seeded; std's `DefaultHasher` may change between Rust releases.
fn fnv(s: &str, seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_as_a_runtime_reports() {
        let cases = [
            ("nginx", "docker.io/library/nginx:latest"),
            ("nginx:1.27", "docker.io/library/nginx:1.27"),
            ("bitnami/redis", "docker.io/bitnami/redis:latest"),
            ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
            ("localhost:5000/app", "localhost:5000/app:latest"),
            ("localhost/app:v1", "localhost/app:v1"),
            ("busybox@sha256:abc", "docker.io/library/busybox@sha256:abc"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(input), want, "{input}");
        }
    }

    #[test]
    fn image_ids_are_stable_digests() {
        let id = image_id("nginx:1.27");
        assert!(id.starts_with("docker.io/library/nginx@sha256:"), "{id}");
        assert_eq!(id.len(), "docker.io/library/nginx@sha256:".len() + 64);
        assert_eq!(id, image_id("docker.io/library/nginx:1.27"));
        assert_ne!(id, image_id("nginx:1.26"));
        assert_eq!(
            image_id("localhost:5000/app"),
            format!(
                "localhost:5000/app@sha256:{}",
                digest("localhost:5000/app:latest")
            )
        );
        assert_eq!(
            image_id("busybox@sha256:abc"),
            "docker.io/library/busybox@sha256:abc"
        );
    }

    #[test]
    fn node_images_list_names_and_sizes() {
        let list = node_images(&["nginx:1.27".to_string()]);
        assert_eq!(list[0]["names"][1], "docker.io/library/nginx:1.27");
        assert_eq!(list[0]["names"][0], image_id("nginx:1.27"));
        assert!(list[0]["sizeBytes"].as_u64().unwrap_or(0) >= 1_000_000);
    }
}
