//! Field selectors: parsing never panics, and what parses prints back to the same terms.
#![no_main]

use std::collections::BTreeMap;

use k8rs_machinery::fields::FieldSelector;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(selector) = FieldSelector::parse(input) else {
        return;
    };
    let reparsed = FieldSelector::parse(&selector.to_string()).expect("a printed selector parses");
    let mut a = selector.requirements().to_vec();
    let mut b = reparsed.requirements().to_vec();
    a.sort_by(|x, y| (&x.field, &x.value).cmp(&(&y.field, &y.value)));
    b.sort_by(|x, y| (&x.field, &x.value).cmp(&(&y.field, &y.value)));
    assert_eq!(a, b);
    let fields: BTreeMap<String, String> = a
        .iter()
        .map(|r| (r.field.clone(), r.value.clone()))
        .collect();
    assert_eq!(selector.matches_map(&fields), reparsed.matches_map(&fields));
});
