//! Label selectors: parsing never panics, and what parses prints back to an equal selector.
#![no_main]

use std::collections::BTreeMap;

use k8rs_machinery::labels::Selector;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(selector) = Selector::parse(input) else {
        return;
    };
    let printed = selector.to_string();
    let reparsed = Selector::parse(&printed).expect("a printed selector parses");
    assert_eq!(reparsed.to_string(), printed);
    let labels: BTreeMap<String, String> = selector
        .requirements()
        .iter()
        .map(|r| {
            (
                r.key().to_owned(),
                r.values().first().cloned().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(selector.matches(&labels), reparsed.matches(&labels));
});
