use super::*;

fn widgets() -> Value {
    json!({
        "metadata": {"name": "widgets.example.com", "uid": "u1", "generation": 1},
        "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [
                {"name": "v1", "served": true, "storage": true,
                 "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.count", "statusReplicasPath": ".status.count"}},
                 "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "properties": {"count": {"type": "integer"}}}}}}},
                {"name": "v1beta1", "served": true, "storage": false,
                 "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}},
                {"name": "v1alpha1", "served": false, "storage": false,
                 "schema": {"openAPIV3Schema": {"type": "object"}}},
            ],
        },
    })
}

#[test]
fn every_served_version_is_an_entry_stored_in_the_storage_version() {
    let defs = defs_of(&widgets()).unwrap();
    let versions: Vec<&str> = defs.iter().map(|d| d.version).collect();
    assert_eq!(versions, ["v1", "v1beta1"]);
    let (v1, v1beta1) = (&defs[0], &defs[1]);
    assert_eq!(v1.prefix, "/registry/example.com/widgets");
    assert_eq!(v1beta1.prefix, v1.prefix);
    assert!(!v1.converts() && v1beta1.converts());
    assert_eq!(v1beta1.storage_version, "example.com/v1");
    assert_eq!(v1.subresources, [Sub::Status, Sub::Scale]);
    assert!(v1beta1.subresources.is_empty());
    assert_eq!(
        (v1.singular.as_str(), v1.short_names),
        ("widget", &["wd"][..])
    );
    let custom = v1.custom.as_ref().unwrap();
    assert_eq!(custom.definition, "com.example.v1.Widget");
    assert_eq!(custom.scale["specReplicasPath"], ".spec.count");
    assert_eq!(
        custom.openapi["x-kubernetes-group-version-kind"],
        json!([{"group": "example.com", "version": "v1", "kind": "Widget"}])
    );
}

#[test]
fn the_schema_prunes_defaults_and_validates_a_version() {
    let defs = defs_of(&widgets()).unwrap();
    let (obj, unknown) = defs[0]
        .typed
        .normalize(
            &json!({"apiVersion": "example.com/v1", "kind": "Widget",
                    "metadata": {"name": "w"}, "spec": {"count": 2, "extra": 1}}),
            true,
        )
        .unwrap();
    assert_eq!(unknown, ["spec.extra"]);
    assert_eq!(obj["spec"], json!({"count": 2}));
    let errs = defs[0]
        .typed
        .validate(&json!({"apiVersion": "example.com/v1", "kind": "Widget",
                "metadata": {"name": "W!", "namespace": "ns"}, "spec": {"count": "two"}}));
    let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["metadata.name", "spec.count"], "{errs:?}");
}

#[test]
fn accepted_names_establish_the_definition_and_record_the_storage_version() {
    let status = desired_status(&widgets(), None);
    assert_eq!(status["acceptedNames"]["listKind"], "WidgetList");
    assert_eq!(status["acceptedNames"]["singular"], "widget");
    assert_eq!(status["storedVersions"], json!(["v1"]));
    let conditions: Vec<(&str, &str)> = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["type"].as_str().unwrap(), c["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        conditions,
        [("NamesAccepted", "True"), ("Established", "True")]
    );
    // The same status again is no change, whatever the transition times say.
    let mut crd = widgets();
    crd["status"] = status.clone();
    let again = desired_status(&crd, None);
    assert!(same_status(&again, &status));
}

#[test]
fn a_name_conflict_is_reported_and_not_established() {
    let status = desired_status(&widgets(), Some("\"widgets\" is already in use"));
    let conditions = status["conditions"].as_array().unwrap();
    assert_eq!(conditions.len(), 1);
    assert_eq!(conditions[0]["type"], "NamesAccepted");
    assert_eq!(conditions[0]["status"], "False");
    assert_eq!(conditions[0]["reason"], "NameConflict");
    assert_eq!(status["acceptedNames"], json!({"plural": "", "kind": ""}));
}

#[test]
fn a_changed_condition_gets_a_new_transition_time() {
    let mut status = json!({});
    set_condition(&mut status, "Established", ("False", "A", "a".into()), "t1");
    set_condition(&mut status, "Established", ("False", "B", "b".into()), "t2");
    assert_eq!(status["conditions"][0]["lastTransitionTime"], "t1");
    assert_eq!(status["conditions"][0]["reason"], "B");
    set_condition(&mut status, "Established", ("True", "C", "c".into()), "t3");
    assert_eq!(status["conditions"][0]["lastTransitionTime"], "t3");
}

fn with_rules() -> Value {
    let mut crd = widgets();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"] = json!({
        "type": "object",
        "properties": {
            "count": {"type": "integer"},
            "mode": {"type": "string", "x-kubernetes-validations": [
                {"rule": "self == oldSelf", "message": "mode is immutable"},
            ]},
        },
        "x-kubernetes-validations": [
            {"rule": "self.count <= 10", "message": "count must be at most 10"},
        ],
    });
    crd
}

fn widget(count: i64, mode: &str) -> Value {
    json!({"apiVersion": "example.com/v1", "kind": "Widget",
           "metadata": {"name": "w", "namespace": "ns", "resourceVersion": "1"},
           "spec": {"count": count, "mode": mode}})
}

#[test]
fn cel_rules_refuse_objects_and_transition_rules_compare_with_the_old_one() {
    let defs = defs_of(&with_rules()).unwrap();
    let ops = &defs[0].typed;
    assert!(ops.validate(&widget(3, "a")).is_empty());
    let errs = ops.validate(&widget(11, "a"));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(
        errs[0].to_string(),
        "spec: Invalid value: \"object\": count must be at most 10"
    );
    // On create there is no old object: the transition rule does not run.
    assert!(ops.validate(&widget(3, "b")).is_empty());
    let errs = ops.validate_update(&widget(3, "b"), &widget(3, "a"));
    let messages: Vec<String> = errs.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        ["spec.mode: Invalid value: \"string\": mode is immutable"]
    );
    // Fields of the wrong type stop the rules, as upstream.
    let mut bad = widget(3, "a");
    bad["spec"]["count"] = json!("many");
    let errs = ops.validate(&bad);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].kind, ErrorKind::TypeInvalid);
}

#[test]
fn a_definition_whose_rule_does_not_parse_is_refused() {
    assert!(rule_syntax_errors(&with_rules()).is_empty());
    let mut crd = with_rules();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["x-kubernetes-validations"]
        [0]["rule"] = json!("self.count <=");
    let errs = rule_syntax_errors(&crd);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(
        errs[0].field,
        "spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule"
    );
}

#[test]
fn a_storage_version_that_is_not_served_is_only_stored_in() {
    let mut crd = widgets();
    crd["spec"]["versions"][0]["served"] = json!(false);
    let registry = crate::registry::Registry::new(Vec::new());
    registry.set_custom(defs_of(&crd).unwrap().into_iter().map(Arc::new).collect());
    assert!(registry.lookup("example.com", "v1", "widgets").is_none());
    let v1beta1 = registry
        .lookup("example.com", "v1beta1", "widgets")
        .unwrap();
    let storage = registry.storage_def(&v1beta1).unwrap();
    assert_eq!(storage.served_api_version, "example.com/v1");
    assert_eq!(registry.groups(), [("example.com", vec!["v1beta1"])]);
    let (found, ns, name) = registry
        .for_key("/registry/example.com/widgets/default/w")
        .unwrap();
    assert_eq!((found.version, ns, name), ("v1", Some("default"), "w"));
}
