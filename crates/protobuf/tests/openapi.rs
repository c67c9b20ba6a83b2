//! `/openapi/v2` in gnostic's protobuf, read back with prost structs written from gnostic's
//! `OpenAPIv2.proto` (the subset the encoder writes).

mod common;

use k8rs_protobuf::encode_openapi_v2;
use prost::Message;
use serde_json::{Map, Value, json};

#[derive(Clone, PartialEq, Message)]
struct Document {
    #[prost(string, tag = "1")]
    swagger: String,
    #[prost(message, optional, tag = "2")]
    info: Option<Info>,
    #[prost(message, optional, tag = "8")]
    paths: Option<Paths>,
    #[prost(message, optional, tag = "9")]
    definitions: Option<Properties>,
    #[prost(message, repeated, tag = "12")]
    security: Vec<SecurityRequirement>,
    #[prost(message, optional, tag = "13")]
    security_definitions: Option<SecurityDefinitions>,
}

#[derive(Clone, PartialEq, Message)]
struct Info {
    #[prost(string, tag = "1")]
    title: String,
    #[prost(string, tag = "2")]
    version: String,
}

#[derive(Clone, PartialEq, Message)]
struct Paths {
    #[prost(message, repeated, tag = "2")]
    path: Vec<NamedPathItem>,
}

#[derive(Clone, PartialEq, Message)]
struct NamedPathItem {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    value: Option<PathItem>,
}

#[derive(Clone, PartialEq, Message)]
struct PathItem {
    #[prost(message, optional, tag = "2")]
    get: Option<Operation>,
    #[prost(message, optional, tag = "4")]
    post: Option<Operation>,
    #[prost(message, repeated, tag = "9")]
    parameters: Vec<ParametersItem>,
}

#[derive(Clone, PartialEq, Message)]
struct Operation {
    #[prost(string, tag = "5")]
    operation_id: String,
    #[prost(string, repeated, tag = "7")]
    consumes: Vec<String>,
    #[prost(message, repeated, tag = "8")]
    parameters: Vec<ParametersItem>,
    #[prost(message, optional, tag = "9")]
    responses: Option<Responses>,
    #[prost(message, repeated, tag = "13")]
    vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, Message)]
struct ParametersItem {
    #[prost(message, optional, tag = "1")]
    parameter: Option<Parameter>,
    #[prost(message, optional, tag = "2")]
    json_reference: Option<JsonReference>,
}

#[derive(Clone, PartialEq, Message)]
struct JsonReference {
    #[prost(string, tag = "1")]
    r#ref: String,
}

#[derive(Clone, PartialEq, Message)]
struct Parameter {
    #[prost(message, optional, tag = "1")]
    body_parameter: Option<BodyParameter>,
    #[prost(message, optional, tag = "2")]
    non_body_parameter: Option<NonBodyParameter>,
}

#[derive(Clone, PartialEq, Message)]
struct BodyParameter {
    #[prost(string, tag = "2")]
    name: String,
    #[prost(string, tag = "3")]
    r#in: String,
    #[prost(bool, tag = "4")]
    required: bool,
    #[prost(message, optional, tag = "5")]
    schema: Option<Schema>,
}

#[derive(Clone, PartialEq, Message)]
struct NonBodyParameter {
    #[prost(message, optional, tag = "3")]
    query: Option<QueryParameter>,
    #[prost(message, optional, tag = "4")]
    path: Option<PathParameter>,
}

#[derive(Clone, PartialEq, Message)]
struct QueryParameter {
    #[prost(string, tag = "2")]
    r#in: String,
    #[prost(string, tag = "4")]
    name: String,
    #[prost(string, tag = "6")]
    r#type: String,
    #[prost(bool, tag = "20")]
    unique_items: bool,
}

#[derive(Clone, PartialEq, Message)]
struct PathParameter {
    #[prost(bool, tag = "1")]
    required: bool,
    #[prost(string, tag = "4")]
    name: String,
    #[prost(string, tag = "5")]
    r#type: String,
}

#[derive(Clone, PartialEq, Message)]
struct Responses {
    #[prost(message, repeated, tag = "1")]
    response_code: Vec<NamedResponseValue>,
}

#[derive(Clone, PartialEq, Message)]
struct NamedResponseValue {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    value: Option<ResponseValue>,
}

#[derive(Clone, PartialEq, Message)]
struct ResponseValue {
    #[prost(message, optional, tag = "1")]
    response: Option<Response>,
}

#[derive(Clone, PartialEq, Message)]
struct Response {
    #[prost(string, tag = "1")]
    description: String,
    #[prost(message, optional, tag = "2")]
    schema: Option<SchemaItem>,
}

#[derive(Clone, PartialEq, Message)]
struct SchemaItem {
    #[prost(message, optional, tag = "1")]
    schema: Option<Schema>,
}

#[derive(Clone, PartialEq, Message)]
struct SecurityRequirement {
    #[prost(message, repeated, tag = "1")]
    additional_properties: Vec<NamedStringArray>,
}

#[derive(Clone, PartialEq, Message)]
struct NamedStringArray {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    value: Option<TypeItem>,
}

#[derive(Clone, PartialEq, Message)]
struct SecurityDefinitions {
    #[prost(message, repeated, tag = "1")]
    additional_properties: Vec<NamedSecurityDefinitionsItem>,
}

#[derive(Clone, PartialEq, Message)]
struct NamedSecurityDefinitionsItem {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    value: Option<SecurityDefinitionsItem>,
}

#[derive(Clone, PartialEq, Message)]
struct SecurityDefinitionsItem {
    #[prost(message, optional, tag = "2")]
    api_key_security: Option<ApiKeySecurity>,
}

#[derive(Clone, PartialEq, Message)]
struct ApiKeySecurity {
    #[prost(string, tag = "1")]
    r#type: String,
    #[prost(string, tag = "2")]
    name: String,
    #[prost(string, tag = "3")]
    r#in: String,
}

#[derive(Clone, PartialEq, Message)]
struct Any {
    #[prost(string, tag = "2")]
    yaml: String,
}

#[derive(Clone, PartialEq, Message)]
struct NamedAny {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    value: Option<Any>,
}

#[derive(Clone, PartialEq, Message)]
struct TypeItem {
    #[prost(string, repeated, tag = "1")]
    value: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
struct ItemsItem {
    #[prost(message, repeated, tag = "1")]
    schema: Vec<Schema>,
}

#[derive(Clone, PartialEq, Message)]
struct Properties {
    #[prost(message, repeated, tag = "1")]
    additional_properties: Vec<NamedSchema>,
}

#[derive(Clone, PartialEq, Message)]
struct NamedSchema {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    value: Option<Schema>,
}

#[derive(Clone, PartialEq, Message)]
struct AdditionalPropertiesItem {
    #[prost(oneof = "Additional", tags = "1, 2")]
    oneof: Option<Additional>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum Additional {
    #[prost(message, tag = "1")]
    Schema(Box<Schema>),
    #[prost(bool, tag = "2")]
    Boolean(bool),
}

#[derive(Clone, PartialEq, Message)]
struct Schema {
    #[prost(string, tag = "1")]
    r#ref: String,
    #[prost(string, tag = "2")]
    format: String,
    #[prost(string, tag = "4")]
    description: String,
    #[prost(message, optional, tag = "5")]
    default: Option<Any>,
    #[prost(string, repeated, tag = "19")]
    required: Vec<String>,
    #[prost(message, repeated, tag = "20")]
    r#enum: Vec<Any>,
    #[prost(message, optional, boxed, tag = "21")]
    additional_properties: Option<Box<AdditionalPropertiesItem>>,
    #[prost(message, optional, tag = "22")]
    r#type: Option<TypeItem>,
    #[prost(message, optional, tag = "23")]
    items: Option<ItemsItem>,
    #[prost(message, repeated, tag = "24")]
    all_of: Vec<Schema>,
    #[prost(message, optional, tag = "25")]
    properties: Option<Properties>,
    #[prost(message, repeated, tag = "31")]
    vendor_extension: Vec<NamedAny>,
}

/// The JSON a decoded schema stands for (the keys the API server's definitions use).
fn schema_json(s: &Schema) -> Value {
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_string(), v);
    };
    if !s.r#ref.is_empty() {
        put("$ref", s.r#ref.clone().into());
    }
    if !s.format.is_empty() {
        put("format", s.format.clone().into());
    }
    if !s.description.is_empty() {
        put("description", s.description.clone().into());
    }
    if let Some(d) = &s.default {
        put("default", yaml_json(d));
    }
    if !s.required.is_empty() {
        put("required", json!(s.required));
    }
    if !s.r#enum.is_empty() {
        put("enum", s.r#enum.iter().map(yaml_json).collect());
    }
    match s
        .additional_properties
        .as_ref()
        .and_then(|a| a.oneof.clone())
    {
        Some(Additional::Schema(a)) => put("additionalProperties", schema_json(&a)),
        Some(Additional::Boolean(b)) => put("additionalProperties", b.into()),
        None => {}
    }
    if let Some(t) = &s.r#type {
        put("type", t.value.first().cloned().unwrap_or_default().into());
    }
    if let Some(i) = s.items.as_ref().and_then(|i| i.schema.first()) {
        put("items", schema_json(i));
    }
    if !s.all_of.is_empty() {
        put("allOf", s.all_of.iter().map(schema_json).collect());
    }
    if let Some(p) = &s.properties {
        let props: Map<String, Value> = p
            .additional_properties
            .iter()
            .map(|n| {
                (
                    n.name.clone(),
                    n.value.as_ref().map(schema_json).unwrap_or_default(),
                )
            })
            .collect();
        put("properties", props.into());
    }
    for e in &s.vendor_extension {
        put(&e.name, e.value.as_ref().map(yaml_json).unwrap_or_default());
    }
    Value::Object(m)
}

fn yaml_json(a: &Any) -> Value {
    serde_json::from_str(&a.yaml).expect("Any.yaml holds JSON (a YAML subset)")
}

fn rewrite_refs(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get_mut("$ref") {
                *r = r.replace("#/components/schemas/", "#/definitions/");
            }
            m.values_mut().for_each(rewrite_refs);
        }
        Value::Array(a) => a.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

fn document() -> Value {
    let mut defs = Value::Object(common::definitions());
    rewrite_refs(&mut defs);
    defs["io.k8s.api.core.v1.ConfigMap"]["x-kubernetes-group-version-kind"] =
        json!([{"group": "", "kind": "ConfigMap", "version": "v1"}]);
    defs["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]["x-kubernetes-patch-strategy"] =
        json!("merge");
    defs["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]["x-kubernetes-patch-merge-key"] =
        json!("name");
    defs["io.k8s.api.core.v1.Service"]["properties"]["kind"]["enum"] = json!(["Service"]);
    defs["io.k8s.api.core.v1.Service"]["properties"]["kind"]["default"] = json!("Service");
    defs["io.k8s.api.core.v1.Service"]["properties"]["spec"]["additionalProperties"] = json!(false);
    let cm = json!({"$ref": "#/definitions/io.k8s.api.core.v1.ConfigMap"});
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": {
            "/api/v1/namespaces/{namespace}/configmaps": {
                "parameters": [{"name": "namespace", "in": "path", "required": true, "type": "string", "uniqueItems": true}],
                "get": {"operationId": "listCoreV1NamespacedConfigMap",
                    "parameters": [{"name": "limit", "in": "query", "type": "integer", "uniqueItems": true}],
                    "responses": {"200": {"description": "OK", "schema": cm}},
                    "x-kubernetes-action": "list"},
                "post": {"operationId": "createCoreV1NamespacedConfigMap", "consumes": ["*/*"],
                    "parameters": [{"name": "body", "in": "body", "required": true, "schema": cm},
                        {"$ref": "#/parameters/fieldManager"}],
                    "responses": {"201": {"description": "Created", "schema": cm}}}
            }
        },
        "definitions": defs,
        "security": [{"BearerToken": []}],
        "securityDefinitions": {"BearerToken": {"type": "apiKey", "name": "authorization", "in": "header"}}
    })
}

#[test]
fn definitions_survive_the_trip() {
    let doc = document();
    let bytes = encode_openapi_v2(&doc);
    let decoded = Document::decode(bytes.as_slice()).expect("gnostic Document");
    assert_eq!(decoded.swagger, "2.0");
    let info = decoded.info.clone().unwrap_or_default();
    assert_eq!(
        (info.title.as_str(), info.version.as_str()),
        ("Kubernetes", "v1.33.0")
    );
    let defs = decoded
        .definitions
        .unwrap_or_default()
        .additional_properties;
    assert!(defs.len() > 300);
    for named in &defs {
        let got = named.value.as_ref().map(schema_json).unwrap_or_default();
        assert_eq!(got, doc["definitions"][&named.name], "{}", named.name);
    }
    assert_eq!(
        defs.len(),
        doc["definitions"].as_object().map_or(0, Map::len)
    );
    let security = &decoded.security[0].additional_properties[0];
    assert_eq!(security.name, "BearerToken");
    let key = decoded
        .security_definitions
        .unwrap_or_default()
        .additional_properties[0]
        .value
        .clone()
        .unwrap_or_default()
        .api_key_security
        .unwrap_or_default();
    assert_eq!(
        (key.r#type.as_str(), key.name.as_str(), key.r#in.as_str()),
        ("apiKey", "authorization", "header")
    );
}

#[test]
fn paths_operations_parameters_and_responses() {
    let bytes = encode_openapi_v2(&document());
    let decoded = Document::decode(bytes.as_slice()).expect("gnostic Document");
    let paths = decoded.paths.unwrap_or_default().path;
    assert_eq!(paths.len(), 1);
    assert_eq!(paths[0].name, "/api/v1/namespaces/{namespace}/configmaps");
    let item = paths[0].value.clone().unwrap_or_default();
    let ns = item.parameters[0]
        .parameter
        .clone()
        .unwrap_or_default()
        .non_body_parameter
        .unwrap_or_default();
    let ns = ns.path.unwrap_or_default();
    assert_eq!(
        (ns.name.as_str(), ns.r#type.as_str(), ns.required),
        ("namespace", "string", true)
    );

    let get = item.get.unwrap_or_default();
    assert_eq!(get.operation_id, "listCoreV1NamespacedConfigMap");
    let limit = get.parameters[0]
        .parameter
        .clone()
        .unwrap_or_default()
        .non_body_parameter
        .unwrap_or_default();
    let limit = limit.query.unwrap_or_default();
    assert_eq!(
        (
            limit.name.as_str(),
            limit.r#in.as_str(),
            limit.r#type.as_str(),
            limit.unique_items
        ),
        ("limit", "query", "integer", true)
    );
    let ok = &get.responses.unwrap_or_default().response_code[0];
    assert_eq!(ok.name, "200");
    let response = ok
        .value
        .clone()
        .unwrap_or_default()
        .response
        .unwrap_or_default();
    assert_eq!(response.description, "OK");
    let schema = response
        .schema
        .unwrap_or_default()
        .schema
        .unwrap_or_default();
    assert_eq!(schema.r#ref, "#/definitions/io.k8s.api.core.v1.ConfigMap");
    assert_eq!(get.vendor_extension[0].name, "x-kubernetes-action");
    assert_eq!(
        get.vendor_extension[0]
            .value
            .clone()
            .unwrap_or_default()
            .yaml,
        "\"list\"\n"
    );

    let post = item.post.unwrap_or_default();
    assert_eq!(post.consumes, ["*/*"]);
    let body = post.parameters[0]
        .parameter
        .clone()
        .unwrap_or_default()
        .body_parameter
        .unwrap_or_default();
    assert_eq!(
        (body.name.as_str(), body.r#in.as_str(), body.required),
        ("body", "body", true)
    );
    assert_eq!(
        body.schema.unwrap_or_default().r#ref,
        "#/definitions/io.k8s.api.core.v1.ConfigMap"
    );
    assert_eq!(
        post.parameters[1]
            .json_reference
            .clone()
            .unwrap_or_default()
            .r#ref,
        "#/parameters/fieldManager"
    );
}

#[test]
fn non_objects_encode_to_nothing() {
    assert!(encode_openapi_v2(&json!([1, 2])).is_empty());
    assert!(!encode_openapi_v2(&json!({"swagger": "2.0"})).is_empty());
}
