//! CustomResourceDefinitions on the real server: kubectl applies a definition and its
//! resources (schema validation, pruning, defaults, printer columns, scale and status
//! subresources, CEL rules, a second served version, a restart, cleanup when the definition
//! goes), and kube-rs's
//! `#[derive(CustomResource)]` types work unmodified.

mod common;

use std::time::Duration;

use common::{Server, eventually};
use futures::StreamExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

const WIDGETS: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    selectableFields: [{jsonPath: .spec.color}]
    subresources:
      status: {}
      scale: {specReplicasPath: .spec.replicas, statusReplicasPath: .status.replicas}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    - {name: Color, type: string, jsonPath: .spec.color}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            x-kubernetes-validations:
            - {rule: "self.replicas <= self.size * 2", message: "at most two replicas per size"}
            properties:
              size: {type: integer, minimum: 1, maximum: 10}
              color: {type: string, enum: [red, blue], default: red}
              replicas: {type: integer, default: 1}
          status:
            type: object
            properties:
              replicas: {type: integer}
  - name: v1beta1
    served: true
    storage: false
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"#;

const WIDGET: &str = r#"
apiVersion: example.com/v1
kind: Widget
metadata: {name: w1}
spec: {size: 3}
"#;

fn established(s: &Server, crd: &str) {
    s.kubectl(&[
        "wait",
        "--for=condition=Established",
        &format!("crd/{crd}"),
        "--timeout=20s",
    ]);
}

#[test]
fn kubectl_serves_a_definition_and_its_resources() {
    let mut s = Server::start(&[]);
    s.kubectl_stdin(&["apply", "-f", "-"], WIDGETS);
    established(&s, "widgets.example.com");
    let crd = s.kubectl(&["get", "crd", "widgets.example.com", "-o", "json"]);
    let crd: serde_json::Value = serde_json::from_str(&crd).unwrap();
    assert_eq!(crd["status"]["acceptedNames"]["listKind"], "WidgetList");
    assert_eq!(crd["status"]["storedVersions"], json!(["v1"]));

    // Defaults are applied, and kubectl reads the printer columns.
    s.kubectl_stdin(&["apply", "-f", "-"], WIDGET);
    let color = s.kubectl(&["get", "widget", "w1", "-o", "jsonpath={.spec.color}"]);
    assert_eq!(color, "red");
    let table = s.kubectl(&["get", "wd"]);
    let header = table.lines().next().unwrap();
    assert!(
        header
            .split_whitespace()
            .eq(["NAME", "SIZE", "COLOR", "AGE"]),
        "{table}"
    );
    assert!(table.contains("w1") && table.contains(" 3 "), "{table}");

    // The schema refuses bad values with upstream's messages.
    let err = s.kubectl_stdin_fails(
        &["apply", "-f", "-"],
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w2}\nspec: {size: 11, color: pink}\n",
    );
    assert!(
        err.contains(
            "spec.size: Invalid value: 11: spec.size in body should be less than or equal to 10"
        ),
        "{err}"
    );
    assert!(
        err.contains("spec.color: Unsupported value: \"pink\""),
        "{err}"
    );
    let err = s.kubectl_stdin_fails(
        &["create", "-f", "-"],
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w3}\nspec: {color: blue}\n",
    );
    assert!(err.contains("spec.size: Required value"), "{err}");

    // Unknown fields: refused under kubectl's strict validation, pruned otherwise.
    let unknown = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w4}\nspec: {size: 2, shape: round}\n";
    let err = s.kubectl_stdin_fails(&["create", "-f", "-"], unknown);
    assert!(err.contains("unknown field \"spec.shape\""), "{err}");
    s.kubectl_stdin(&["create", "--validate=false", "-f", "-"], unknown);
    let w4 = s.kubectl(&["get", "widget", "w4", "-o", "json"]);
    let w4: serde_json::Value = serde_json::from_str(&w4).unwrap();
    assert!(w4["spec"].get("shape").is_none(), "{w4}");

    // kubectl apply patches what changed; kubectl explain reads the published schema.
    s.kubectl_stdin(
        &["apply", "-f", "-"],
        &WIDGET.replace("size: 3", "size: 3, color: blue"),
    );
    let color = s.kubectl(&["get", "widget", "w1", "-o", "jsonpath={.spec.color}"]);
    assert_eq!(color, "blue");
    let blue = s.kubectl(&[
        "get",
        "widgets",
        "--field-selector",
        "spec.color=blue",
        "-o",
        "name",
    ]);
    assert_eq!(blue.trim(), "widget.example.com/w1");
    let err = s.kubectl_fails(&["get", "widgets", "--field-selector", "spec.size=3"]);
    assert!(err.contains("spec.size"), "{err}");
    let explained = s.kubectl(&["explain", "widgets.spec"]);
    assert!(
        explained.contains("KIND:       Widget")
            && explained.contains("size\t<integer>")
            && explained.contains("-required-"),
        "{explained}"
    );

    s.kubectl_stdin(
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        &WIDGET.replace("size: 3", "size: 3, color: red"),
    );
    let color = s.kubectl(&["get", "widget", "w1", "-o", "jsonpath={.spec.color}"]);
    assert_eq!(color, "red");

    // The scale subresource, the merge patch, and the other served version.
    s.kubectl(&["scale", "widget", "w1", "--replicas=4"]);
    let replicas = s.kubectl(&["get", "widget", "w1", "-o", "jsonpath={.spec.replicas}"]);
    assert_eq!(replicas, "4");
    let err = s.kubectl_fails(&["scale", "widget", "w1", "--replicas=7"]);
    assert!(
        err.contains("spec: Invalid value: \"object\": at most two replicas per size"),
        "{err}"
    );

    // After a restart the definition is served before the server says it is ready.
    s.kill9_and_restart();
    let size = s.kubectl(&["get", "widget", "w1", "-o", "jsonpath={.spec.size}"]);
    assert_eq!(size, "3");
    s.kubectl(&[
        "patch",
        "widget",
        "w1",
        "--type=merge",
        "-p",
        r#"{"spec":{"size":5}}"#,
    ]);
    let v1beta1 = s.kubectl(&["get", "widgets.v1beta1.example.com", "w1", "-o", "json"]);
    let v1beta1: serde_json::Value = serde_json::from_str(&v1beta1).unwrap();
    assert_eq!(v1beta1["apiVersion"], "example.com/v1beta1");
    assert_eq!(v1beta1["spec"]["size"], 5);
    let err = s.kubectl_fails(&[
        "patch",
        "widget",
        "w1",
        "--type=strategic",
        "-p",
        r#"{"spec":{"size":6}}"#,
    ]);
    assert!(err.contains("not supported"), "{err}");

    // Deleting the definition takes its resources with it; while it waits for them (here a
    // finalizer holds one), no new resource may be created.
    s.kubectl(&[
        "patch",
        "widget",
        "w1",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":["example.com/hold"]}}"#,
    ]);
    s.kubectl(&["delete", "crd", "widgets.example.com", "--wait=false"]);
    assert!(eventually(Duration::from_secs(20), || {
        let out = s.kubectl_raw(&[
            "get",
            "widget",
            "w1",
            "-o",
            "jsonpath={.metadata.deletionTimestamp}",
        ]);
        !String::from_utf8_lossy(&out.stdout).trim().is_empty()
    }));
    let err = s.kubectl_stdin_fails(
        &["create", "-f", "-"],
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w5}\nspec: {size: 1}\n",
    );
    assert!(
        err.contains("create not allowed while custom resource definition is terminating"),
        "{err}"
    );
    s.kubectl(&[
        "patch",
        "widget",
        "w1",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    assert!(eventually(Duration::from_secs(20), || {
        s.kubectl_raw(&[
            "get",
            "--raw",
            "/apis/example.com/v1/namespaces/default/widgets",
        ])
        .status
        .code()
            != Some(0)
    }));
    s.kubectl_stdin(&["apply", "-f", "-"], WIDGETS);
    established(&s, "widgets.example.com");
    let left = s.kubectl(&["get", "widgets", "-o", "name"]);
    assert!(
        left.trim().is_empty(),
        "resources outlived their definition: {left}"
    );
}

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "k8rs.test",
    version = "v1",
    kind = "Gadget",
    namespaced,
    status = "GadgetStatus",
    printcolumn = r#"{"name":"Level","type":"integer","jsonPath":".spec.level"}"#
)]
struct GadgetSpec {
    level: u32,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema)]
struct GadgetStatus {
    ready: bool,
}

#[tokio::test]
async fn kube_rs_derived_resources_work_unmodified() {
    let s = Server::start(&[]);
    let client = s.client().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &Gadget::crd())
        .await
        .unwrap();
    let crd_established = tokio::time::timeout(
        Duration::from_secs(20),
        kube::runtime::wait::await_condition(
            crds.clone(),
            "gadgets.k8rs.test",
            kube::runtime::wait::conditions::is_crd_established(),
        ),
    )
    .await;
    assert!(matches!(crd_established, Ok(Ok(_))), "{crd_established:?}");

    let gadgets: Api<Gadget> = Api::namespaced(client.clone(), "default");
    let mut events = watcher(gadgets.clone(), watcher::Config::default())
        .applied_objects()
        .boxed();
    let g = Gadget::new(
        "g1",
        GadgetSpec {
            level: 2,
            tags: vec!["a".into()],
        },
    );
    gadgets.create(&PostParams::default(), &g).await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("a watch event within 10 s")
        .unwrap()
        .unwrap();
    assert_eq!(seen.spec.level, 2);

    // Server-side apply and the status subresource, as controllers written with kube-rs do.
    let ssa = PatchParams::apply("gadget-test").force();
    let applied = gadgets
        .patch(
            "g1",
            &ssa,
            &Patch::Apply(json!({
                "apiVersion": "k8rs.test/v1", "kind": "Gadget",
                "spec": {"level": 3, "tags": ["a", "b"]},
            })),
        )
        .await
        .unwrap();
    assert_eq!(applied.spec.level, 3);
    let status = gadgets
        .patch_status(
            "g1",
            &ssa,
            &Patch::Apply(json!({
                "apiVersion": "k8rs.test/v1", "kind": "Gadget",
                "status": {"ready": true},
            })),
        )
        .await
        .unwrap();
    assert!(status.status.is_some_and(|s| s.ready));
    let listed = gadgets.list(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].spec.tags, ["a", "b"]);

    // A wrong type is a 422 Invalid Status, not a stored object.
    let raw: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        "default",
        &kube::api::ApiResource::erase::<Gadget>(&()),
    );
    let bad: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "k8rs.test/v1", "kind": "Gadget",
        "metadata": {"name": "g2"}, "spec": {"level": "high"},
    }))
    .unwrap();
    match raw.create(&PostParams::default(), &bad).await {
        Err(kube::Error::Api(e)) => {
            assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"), "{e:?}")
        }
        other => panic!("expected 422, got {other:?}"),
    }
    gadgets
        .delete("g1", &DeleteParams::default())
        .await
        .unwrap();
}
