use super::*;
use crate::testutil::{PodBuilder, ServiceBuilder};

fn named(mut slice: EndpointSlice, name: &str) -> EndpointSlice {
    slice.metadata.name = Some(name.into());
    slice.metadata.generate_name = None;
    slice.metadata.resource_version = Some("1".into());
    slice
}

fn ips(slice: &EndpointSlice) -> Vec<String> {
    slice
        .endpoints
        .iter()
        .map(|e| e.addresses[0].clone())
        .collect()
}

#[test]
fn one_slice_with_conditions_zone_and_owner() {
    let svc = ServiceBuilder::new("web").label("tier", "front").build();
    let ready = PodBuilder::new("a").ip("10.42.0.5").build();
    let unready = PodBuilder::new("b")
        .ip("10.42.0.6")
        .not_ready()
        .node("node-2")
        .build();
    let terminating = PodBuilder::new("c").ip("10.42.0.7").terminating().build();
    let done = PodBuilder::new("d").ip("10.42.0.8").phase("Failed").build();
    let pods = [&ready, &unready, &terminating, &done];
    let zones = HashMap::from([("node-1".to_string(), "zone-a".to_string())]);
    let plan = plan(Some(&svc), &pods, &zones, &[], None, 100);
    assert!(plan.update.is_empty() && plan.delete.is_empty());
    assert_eq!(plan.create.len(), 1);
    let slice = &plan.create[0];
    assert_eq!(slice.metadata.generate_name.as_deref(), Some("web-"));
    assert_eq!(slice.address_type, "IPv4");
    let labels = slice.metadata.labels.clone().unwrap();
    assert_eq!(labels[SERVICE_NAME_LABEL], "web");
    assert_eq!(labels[MANAGED_BY_LABEL], MANAGED_BY);
    assert_eq!(labels["tier"], "front");
    let owner = &slice.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("Service", "uid-web")
    );
    assert_eq!(owner.controller, Some(true));
    assert_eq!(
        slice.ports,
        Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(8080),
            protocol: Some("TCP".into()),
            app_protocol: None
        }])
    );
    let cond = |i: usize| {
        let c = slice.endpoints[i].conditions.clone().unwrap();
        (c.ready.unwrap(), c.serving.unwrap(), c.terminating.unwrap())
    };
    assert_eq!(ips(slice), ["10.42.0.5", "10.42.0.6", "10.42.0.7"]);
    assert_eq!(cond(0), (true, true, false));
    assert_eq!(cond(1), (false, false, false));
    assert_eq!(cond(2), (false, true, true), "terminating keeps serving");
    assert_eq!(slice.endpoints[0].zone.as_deref(), Some("zone-a"));
    assert_eq!(slice.endpoints[1].zone, None);
    assert_eq!(slice.endpoints[1].node_name.as_deref(), Some("node-2"));
    let target = slice.endpoints[0].target_ref.clone().unwrap();
    assert_eq!(target.name.as_deref(), Some("a"));
}

#[test]
fn splits_at_the_limit_and_updates_in_place() {
    let svc = ServiceBuilder::new("web").build();
    let pods: Vec<Pod> = (0..5)
        .map(|i| {
            PodBuilder::new(&format!("p{i}"))
                .ip(&format!("10.42.0.{}", 10 + i))
                .build()
        })
        .collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    let zones = HashMap::new();
    let first = plan(Some(&svc), &refs, &zones, &[], None, 2);
    assert_eq!(first.create.len(), 3);
    let existing: Vec<EndpointSlice> = first
        .create
        .into_iter()
        .enumerate()
        .map(|(i, s)| named(s, &format!("web-{i}")))
        .collect();
    let existing_refs: Vec<&EndpointSlice> = existing.iter().collect();
    assert!(plan(Some(&svc), &refs, &zones, &existing_refs, None, 2).is_empty());

    // One pod becomes unready: only its slice is updated.
    let mut changed = pods.clone();
    changed[0] = PodBuilder::new("p0").ip("10.42.0.10").not_ready().build();
    let refs: Vec<&Pod> = changed.iter().collect();
    let second = plan(Some(&svc), &refs, &zones, &existing_refs, None, 2);
    assert!(second.create.is_empty() && second.delete.is_empty());
    assert_eq!(second.update.len(), 1);
    assert_eq!(second.update[0].metadata.name.as_deref(), Some("web-0"));

    // One pod goes, one comes: the new one takes the freed place.
    let mut swapped = pods.clone();
    swapped[1] = PodBuilder::new("q").ip("10.42.0.99").build();
    let refs: Vec<&Pod> = swapped.iter().collect();
    let third = plan(Some(&svc), &refs, &zones, &existing_refs, None, 2);
    assert!(third.create.is_empty() && third.delete.is_empty());
    assert_eq!(third.update.len(), 1);
    assert_eq!(ips(&third.update[0]), ["10.42.0.10", "10.42.0.99"]);
}

#[test]
fn empty_service_gets_a_placeholder_and_deleted_service_loses_slices() {
    let svc = ServiceBuilder::new("web").build();
    let zones = HashMap::new();
    let plan0 = plan(Some(&svc), &[], &zones, &[], None, 100);
    assert_eq!(plan0.create.len(), 1);
    assert!(plan0.create[0].endpoints.is_empty());
    let placeholder = named(plan0.create[0].clone(), "web-x");
    assert!(plan(Some(&svc), &[], &zones, &[&placeholder], None, 100).is_empty());
    let gone = plan(None, &[], &zones, &[&placeholder], None, 100);
    assert_eq!(gone.delete.len(), 1);
    // As upstream, a selector-less Service's slices are someone else's (the API server writes
    // the `kubernetes` one): left alone.
    let selectorless = ServiceBuilder::new("web").no_selector().build();
    assert!(plan(Some(&selectorless), &[], &zones, &[&placeholder], None, 100).is_empty());
}

#[test]
fn pods_gone_reuse_the_slice_for_the_placeholder() {
    let svc = ServiceBuilder::new("web").build();
    let a = PodBuilder::new("a").ip("10.42.0.5").build();
    let zones = HashMap::new();
    let created = plan(Some(&svc), &[&a], &zones, &[], None, 100).create;
    let existing = named(created[0].clone(), "web-1");
    let plan = plan(Some(&svc), &[], &zones, &[&existing], None, 100);
    assert!(plan.create.is_empty() && plan.delete.is_empty());
    assert_eq!(plan.update.len(), 1);
    assert!(plan.update[0].endpoints.is_empty());
}

#[test]
fn headless_label_and_hostnames() {
    let svc = ServiceBuilder::new("web").headless().build();
    let a = PodBuilder::new("a")
        .ip("10.42.0.5")
        .hostname("a", "web")
        .build();
    let plan = plan(Some(&svc), &[&a], &HashMap::new(), &[], None, 100);
    let slice = &plan.create[0];
    assert_eq!(slice.metadata.labels.as_ref().unwrap()[HEADLESS_LABEL], "");
    assert_eq!(slice.endpoints[0].hostname.as_deref(), Some("a"));
}
