use super::*;

fn ep(ip: &str) -> Endpoint {
    Endpoint {
        addresses: vec![ip.into()],
        ..Default::default()
    }
}

fn tpl() -> SliceTemplate {
    SliceTemplate {
        namespace: "default".into(),
        generate_name: "web-".into(),
        labels: BTreeMap::from([(SERVICE_NAME_LABEL.to_string(), "web".to_string())]),
        annotations: BTreeMap::new(),
        owner: OwnerReference {
            uid: "u".into(),
            ..Default::default()
        },
    }
}

fn port(n: i32) -> EndpointPort {
    EndpointPort {
        port: Some(n),
        ..Default::default()
    }
}

fn existing(name: &str, ports: Vec<EndpointPort>, eps: &[&str]) -> EndpointSlice {
    let mut s = new_slice(&tpl(), ports, eps.iter().map(|i| ep(i)).collect());
    s.metadata.name = Some(name.into());
    s
}

#[test]
fn fills_an_unchanged_slice_that_fits_instead_of_creating() {
    let a = existing("a", vec![port(80)], &["1", "2"]);
    let b = existing("b", vec![port(80)], &["3"]);
    let group = Group {
        ports: vec![port(80)],
        endpoints: ["1", "2", "3", "4"].iter().map(|i| ep(i)).collect(),
    };
    let plan = reconcile(vec![group], &[&a, &b], &tpl(), 3);
    assert!(plan.create.is_empty() && plan.delete.is_empty());
    assert_eq!(plan.update.len(), 1);
    assert_eq!(plan.update[0].metadata.name.as_deref(), Some("a"));
    assert_eq!(plan.update[0].endpoints.len(), 3);
}

#[test]
fn a_remainder_after_full_new_slices_fills_an_unchanged_slice() {
    let a = existing("a", vec![port(80)], &["1"]);
    let group = Group {
        ports: vec![port(80)],
        endpoints: ["1", "2", "3", "4", "5"].iter().map(|i| ep(i)).collect(),
    };
    let plan = reconcile(vec![group], &[&a], &tpl(), 3);
    assert!(plan.delete.is_empty());
    assert_eq!(plan.create.len(), 1);
    assert_eq!(plan.create[0].endpoints.len(), 3);
    assert_eq!(plan.update.len(), 1);
    assert_eq!(plan.update[0].metadata.name.as_deref(), Some("a"));
    assert_eq!(plan.update[0].endpoints.len(), 2);
}

#[test]
fn changed_ports_reuse_the_old_slice() {
    let a = existing("a", vec![port(80)], &["1"]);
    let group = Group {
        ports: vec![port(81)],
        endpoints: vec![ep("1")],
    };
    let plan = reconcile(vec![group], &[&a], &tpl(), 100);
    assert!(plan.create.is_empty() && plan.delete.is_empty());
    assert_eq!(plan.update[0].ports, Some(vec![port(81)]));
}

#[test]
fn deletes_slices_nothing_needs() {
    let a = existing("a", vec![port(80)], &["1"]);
    let b = existing("b", vec![port(80)], &["2"]);
    let group = Group {
        ports: vec![port(80)],
        endpoints: vec![ep("1")],
    };
    let plan = reconcile(vec![group], &[&a, &b], &tpl(), 100);
    assert!(plan.create.is_empty() && plan.update.is_empty());
    assert_eq!(plan.delete[0].metadata.name.as_deref(), Some("b"));
}
