use super::*;

fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn parses_and_prints_back() {
    let cases = [
        ("", ""),
        ("a=b", "a=b"),
        ("a==b", "a=b"),
        ("a!=b", "a!=b"),
        ("b=c,a=b", "a=b,b=c"),
        (
            "metadata.name=x,spec.nodeName=",
            "metadata.name=x,spec.nodeName=",
        ),
        ("a=b\\,c", "a=b\\,c"),
        ("a=b\\=c", "a=b\\=c"),
        ("a=b\\\\c", "a=b\\\\c"),
        ("a=!b", "a=!b"),
        ("=", ""),
        ("a=b,,c=d", "a=b,c=d"),
    ];
    for (input, want) in cases {
        let sel = FieldSelector::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(sel.to_string(), want, "{input:?}");
    }
}

#[test]
fn parsed_values_are_unescaped() {
    let sel = FieldSelector::parse("a=b\\,c\\=d\\\\e").expect("parse");
    assert_eq!(
        sel.requirements(),
        &[Requirement {
            field: "a".into(),
            operator: Operator::Equals,
            value: "b,c=d\\e".into(),
        }]
    );
}

#[test]
fn rejects_with_upstream_messages() {
    let cases = [
        ("a", "invalid selector: 'a'; can't understand 'a'"),
        ("a=b,c", "invalid selector: 'a=b,c'; can't understand 'c'"),
        (
            "a=b\\x",
            "invalid field selector: invalid escape sequence: \\x",
        ),
        (
            "a=b\\",
            "invalid field selector: invalid escape sequence: \\",
        ),
        (
            "a=b=c",
            "invalid field selector: unescaped character in value: 61",
        ),
        (
            "a==b=c",
            "invalid field selector: unescaped character in value: 61",
        ),
    ];
    for (input, want) in cases {
        let err = FieldSelector::parse(input).expect_err(input);
        assert_eq!(err.to_string(), want, "{input:?}");
    }
}

#[test]
fn matches_fields() {
    let pod = fields(&[("metadata.name", "web"), ("spec.nodeName", "n1")]);
    let cases = [
        ("", true),
        ("metadata.name=web", true),
        ("metadata.name==web", true),
        ("metadata.name=db", false),
        ("metadata.name!=db", true),
        ("spec.nodeName=", false),
        ("status.phase=", true),
        ("status.phase!=Running", true),
        ("metadata.name=web,spec.nodeName!=n1", false),
    ];
    for (input, want) in cases {
        let sel = FieldSelector::parse(input).expect(input);
        assert_eq!(sel.matches_map(&pod), want, "{input:?}");
    }
}

#[test]
fn supported_fields_and_exact_match() {
    let sel = FieldSelector::parse("spec.nodeName=n1,metadata.name!=x").expect("parse");
    let supported = |f: &str| matches!(f, "metadata.name" | "metadata.namespace" | "spec.nodeName");
    assert_eq!(sel.ensure_supported(supported), Ok(()));
    assert_eq!(sel.requires_exact_match("spec.nodeName"), Some("n1"));
    assert_eq!(sel.requires_exact_match("metadata.name"), None);
    let bad = FieldSelector::parse("spec.foo=1").expect("parse");
    assert_eq!(
        bad.ensure_supported(supported).map_err(|e| e.to_string()),
        Err("field label not supported: spec.foo".to_owned())
    );
}

#[test]
fn escape_round_trips() {
    for raw in ["", "plain", "a,b", "a=b", "a\\b", ",=\\"] {
        assert_eq!(unescape_value(&escape_value(raw)).as_deref(), Ok(raw));
    }
}
