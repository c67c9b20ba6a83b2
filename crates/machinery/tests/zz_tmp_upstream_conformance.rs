// TEMPORARY local harness, not to be committed.
use k8rs_machinery::smp::{JsonSchemaDefinitions, strategic_merge_patch};
use serde_json::Value;

fn canon(v: &Value) -> Value {
    match v {
        Value::Array(a) => {
            let mut items: Vec<Value> = a.iter().map(canon).collect();
            items.sort_by_key(|x| x.to_string());
            Value::Array(items)
        }
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), canon(v))).collect()),
        other => other.clone(),
    }
}

#[test]
fn upstream_cases() {
    let swagger: Value =
        serde_json::from_str(&std::fs::read_to_string("/tmp/pm/conf/swagger.json").unwrap())
            .unwrap();
    let schema = JsonSchemaDefinitions::with_patch_metadata(
        swagger["definitions"].as_object().unwrap(),
        &[],
    );
    let cases: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string("/tmp/pm/conf/cases.json").unwrap()).unwrap();
    let (mut ok, mut bad) = (0, 0);
    for c in &cases {
        let sorted = c["sorted"].as_bool().unwrap();
        let desc = c["description"].as_str().unwrap();
        let mut runs = vec![];
        if !c["twoWay"].is_null() || !c["original"].is_null() {
            let exp = if !c["twoWayResult"].is_null() {
                c["twoWayResult"].clone()
            } else {
                c["modified"].clone()
            };
            runs.push(("2way", c["original"].clone(), c["twoWay"].clone(), exp));
        }
        if !c["threeWay"].is_null() || !c["current"].is_null() {
            runs.push((
                "3way",
                c["current"].clone(),
                c["threeWay"].clone(),
                c["result"].clone(),
            ));
        }
        for (kind, orig, patch, exp) in runs {
            if patch.is_null() && exp.is_null() {
                continue;
            }
            let got = strategic_merge_patch(orig.clone(), patch.clone(), &schema, "mergeItem");
            let expected_err = c.get("expectedError").and_then(|e| e.as_str());
            let pass = match (&got, expected_err) {
                (Err(e), Some(want)) if kind == "2way" => e.to_string().contains(want),
                (Ok(v), _) => {
                    let exp = if exp.is_null() {
                        Value::Object(Default::default())
                    } else {
                        exp.clone()
                    };
                    if sorted {
                        canon(v) == canon(&exp)
                    } else {
                        *v == exp
                    }
                }
                _ => false,
            };
            if pass {
                ok += 1
            } else {
                bad += 1;
                println!(
                    "FAIL [{}] {desc} {kind}\n  orig={orig}\n  patch={patch}\n  want={exp} err={expected_err:?}\n  got={got:?}",
                    c["set"]
                );
            }
        }
    }
    println!("ok={ok} bad={bad}");
}

#[test]
fn upstream_unknown_field_cases() {
    let swagger: Value =
        serde_json::from_str(&std::fs::read_to_string("/tmp/pm/conf/swagger.json").unwrap())
            .unwrap();
    let schema = JsonSchemaDefinitions::with_patch_metadata(
        swagger["definitions"].as_object().unwrap(),
        &[],
    );
    let cases: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string("/tmp/pm/conf/unknown.json").unwrap())
            .unwrap();
    let p = |s: &Value| -> Value {
        serde_json::from_str(s.as_str().unwrap_or("null")).unwrap_or(Value::Null)
    };
    let (mut ok, mut bad) = (0, 0);
    for c in &cases {
        for (o, patch, res) in [
            ("Original", "ExpectedTwoWay", "ExpectedTwoWayResult"),
            ("Current", "ExpectedThreeWay", "ExpectedThreeWayResult"),
        ] {
            if c[patch].is_null() {
                continue;
            }
            let got = strategic_merge_patch(p(&c[o]), p(&c[patch]), &schema, "mergeItem");
            if got.as_ref().ok() == Some(&p(&c[res])) {
                ok += 1
            } else {
                bad += 1;
                println!(
                    "FAIL {} {patch}: got {got:?} want {}",
                    c["description"], c[res]
                );
            }
        }
    }
    println!("unknown ok={ok} bad={bad}");
}
