use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;

fn meta_path() -> Path {
    Path::new("metadata")
}

fn named(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        ..ObjectMeta::default()
    }
}

fn messages(errs: &[FieldError]) -> Vec<String> {
    errs.iter().map(ToString::to_string).collect()
}

#[test]
fn create_name_rules() {
    let ok = named("web-1", Some("default"));
    assert!(validate_object_meta(&ok, true, name_is_dns_subdomain, &meta_path()).is_empty());

    let cases: Vec<(ObjectMeta, bool, Vec<&str>)> = vec![
        (
            ObjectMeta::default(),
            false,
            vec!["metadata.name: Required value: name or generateName is required"],
        ),
        (
            named("Foo_Bar", None),
            false,
            vec![
                "metadata.name: Invalid value: \"Foo_Bar\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
            ],
        ),
        (
            named("x", None),
            true,
            vec!["metadata.namespace: Required value"],
        ),
        (
            named("x", Some("default")),
            false,
            vec!["metadata.namespace: Forbidden: not allowed on this type"],
        ),
        (
            named("x", Some("a.b")),
            true,
            vec!["metadata.namespace: Invalid value: \"a.b\": must not contain dots"],
        ),
    ];
    for (meta, namespaced, want) in cases {
        let errs = validate_object_meta(&meta, namespaced, name_is_dns_subdomain, &meta_path());
        assert_eq!(messages(&errs), want, "{meta:?}");
    }
}

#[test]
fn generate_name_is_masked() {
    let meta = ObjectMeta {
        generate_name: Some("web-".into()),
        ..ObjectMeta::default()
    };
    let errs = validate_object_meta(&meta, false, name_is_dns_subdomain, &meta_path());
    assert_eq!(
        messages(&errs),
        vec!["metadata.name: Required value: name or generateName is required"]
    );
    let bad = ObjectMeta {
        generate_name: Some("Web-".into()),
        name: Some("ok".into()),
        ..ObjectMeta::default()
    };
    let errs = validate_object_meta(&bad, false, name_is_dns_subdomain, &meta_path());
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0]
            .to_string()
            .starts_with("metadata.generateName: Invalid value: \"Web-\"")
    );
}

#[test]
fn labels_annotations_and_finalizers() {
    let mut meta = named("x", None);
    meta.labels = Some(BTreeMap::from([("-bad".to_owned(), "ok".to_owned())]));
    meta.annotations = Some(BTreeMap::from([(
        "big".to_owned(),
        "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT_B),
    )]));
    meta.finalizers = Some(vec!["orphan".into(), "foregroundDeletion".into()]);
    meta.generation = Some(-1);
    let errs = validate_object_meta(&meta, false, name_is_dns_subdomain, &meta_path());
    assert_eq!(
        messages(&errs),
        vec![
            "metadata.generation: Invalid value: -1: must be greater than or equal to 0",
            "metadata.labels: Invalid value: \"-bad\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
            "metadata.annotations: Too long: may not be more than 262144 bytes",
            "metadata.finalizers: Invalid value: []string{\"orphan\", \"foregroundDeletion\"}: finalizer orphan and foregroundDeletion cannot be both set",
        ]
    );
    assert_eq!(errs[0].reason(), "FieldValueInvalid");
    assert_eq!(errs[2].reason(), "FieldValueTooLong");
}

#[test]
fn annotation_keys_are_case_insensitive() {
    let annotations = BTreeMap::from([("Example.COM/Key".to_owned(), String::new())]);
    assert!(validate_annotations(&annotations, &Path::new("a")).is_empty());
}

#[test]
fn owner_references() {
    let owner = |kind: &str, name: &str, controller: bool| OwnerReference {
        api_version: "apps/v1".into(),
        kind: kind.into(),
        name: name.into(),
        uid: "u".into(),
        controller: Some(controller),
        ..OwnerReference::default()
    };
    let path = Path::new("metadata").child("ownerReferences");
    assert!(validate_owner_references(&[owner("ReplicaSet", "a", true)], &path).is_empty());
    let two = [
        owner("ReplicaSet", "a", true),
        owner("ReplicaSet", "b", true),
    ];
    let errs = validate_owner_references(&two, &path);
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0]
            .detail
            .ends_with("for ReplicaSet/a and ReplicaSet/b")
    );
    let bad = OwnerReference::default();
    assert_eq!(
        validate_owner_references(&[bad], &path)
            .iter()
            .map(|e| e.field.as_str())
            .collect::<Vec<_>>(),
        vec![
            "metadata.ownerReferences.apiVersion",
            "metadata.ownerReferences.kind",
            "metadata.ownerReferences.name",
            "metadata.ownerReferences.uid",
        ]
    );
    let event = OwnerReference {
        api_version: "v1".into(),
        kind: "Event".into(),
        name: "e".into(),
        uid: "u".into(),
        ..OwnerReference::default()
    };
    let errs = validate_owner_references(&[event], &path);
    assert!(
        errs[0]
            .detail
            .contains("/v1, Kind=Event is disallowed from being an owner")
    );
}

#[test]
fn path_segment_names() {
    assert_eq!(
        validate_path_segment_name("..", false),
        vec!["may not be '..'"]
    );
    assert_eq!(
        validate_path_segment_name("a/b%c", false),
        vec!["may not contain '/'", "may not contain '%'"]
    );
    assert!(validate_path_segment_name("system:node", false).is_empty());
}

#[test]
fn update_rules() {
    let mut old = named("x", Some("ns"));
    old.uid = Some("u1".into());
    old.resource_version = Some("5".into());
    old.generation = Some(3);
    old.creation_timestamp = Some(Time("2024-01-01T00:00:00Z".parse().expect("timestamp")));

    let mut same = old.clone();
    same.labels = Some(BTreeMap::from([("a".into(), "b".into())]));
    assert!(validate_object_meta_update(&same, &old, &meta_path()).is_empty());

    let mut new = named("y", Some("other"));
    new.uid = Some("u2".into());
    new.generation = Some(2);
    let errs = validate_object_meta_update(&new, &old, &meta_path());
    assert_eq!(
        messages(&errs),
        vec![
            "metadata.resourceVersion: Invalid value: \"\": must be specified for an update",
            "metadata.generation: Invalid value: 2: must not be decremented",
            "metadata.name: Invalid value: \"y\": field is immutable",
            "metadata.namespace: Invalid value: \"other\": field is immutable",
            "metadata.uid: Invalid value: \"u2\": field is immutable",
            "metadata.creationTimestamp: Invalid value: \"null\": field is immutable",
        ]
    );
}

#[test]
fn no_new_finalizers_while_deleting() {
    let mut old = named("x", None);
    old.resource_version = Some("1".into());
    old.deletion_timestamp = Some(Time("2024-01-01T00:00:00Z".parse().expect("timestamp")));
    old.finalizers = Some(vec!["a".into()]);
    let mut new = old.clone();
    new.finalizers = Some(vec!["a".into(), "c".into(), "b".into()]);
    let errs = validate_object_meta_update(&new, &old, &meta_path());
    assert_eq!(
        messages(&errs),
        vec![
            "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{\"b\", \"c\"}"
        ]
    );
}

#[test]
fn managed_fields() {
    let entry = ManagedFieldsEntry {
        operation: Some("Patch".into()),
        fields_type: Some("FieldsV2".into()),
        manager: Some("m".repeat(129)),
        ..ManagedFieldsEntry::default()
    };
    let errs = validate_managed_fields(&[entry], &Path::new("metadata").child("managedFields"));
    assert_eq!(
        messages(&errs),
        vec![
            "metadata.managedFields[0].operation: Invalid value: \"Patch\": must be `Apply` or `Update`",
            "metadata.managedFields[0].fieldsType: Invalid value: \"FieldsV2\": must be `FieldsV1`",
            "metadata.managedFields[0].manager: Too long: may not be more than 128 bytes",
        ]
    );
}
