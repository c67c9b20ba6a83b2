use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

use super::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn parses_and_prints_back() {
    let cases = [
        ("", ""),
        ("x=a", "x=a"),
        ("x=a,y=b,z=c", "x=a,y=b,z=c"),
        ("z=c,x=a", "x=a,z=c"),
        (" x = a , y != b ", "x=a,y!=b"),
        ("x==a", "x==a"),
        ("x=", "x="),
        ("x= ,z= ", "x=,z="),
        ("x", "x"),
        ("!x", "!x"),
        ("x>1", "x>1"),
        ("x>1,z<5", "x>1,z<5"),
        ("x in (b,a)", "x in (a,b)"),
        ("x in (a,a)", "x in (a)"),
        ("x notin (a)", "x notin (a)"),
        ("x in ()", "x in ()"),
        ("x in (,a)", "x in (,a)"),
        ("x in (a,)", "x in (,a)"),
        ("x in (a,,b)", "x in (,a,b)"),
        ("in in (in,notin)", "in in (in,notin)"),
        ("example.com/app=web", "example.com/app=web"),
        ("\tx\n=\ra ", "x=a"),
    ];
    for (input, want) in cases {
        let sel = Selector::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(sel.to_string(), want, "{input:?}");
    }
}

#[test]
fn rejects_with_upstream_messages() {
    let label_value_msg = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
    let cases = [
        (
            "x y",
            "unable to parse requirement: found 'y', expected: in, notin, =, ==, !=, gt, lt".to_owned(),
        ),
        ("x=a,", "found '', expected: identifier after ','".to_owned()),
        ("x=a b", "found 'b', expected: ',' or 'end of string'".to_owned()),
        ("x=a\ty=b", "found 'y', expected: ',' or 'end of string'".to_owned()),
        (",x", "found ',', expected: !, identifier, or 'end of string'".to_owned()),
        ("x in a", "unable to parse requirement: found 'a' expected: '('".to_owned()),
        ("x in (a", "unable to parse requirement: found '', expected: ',' or ')'".to_owned()),
        ("x in (a b)", "unable to parse requirement: found 'b', expected: ',' or ')'".to_owned()),
        ("x in (=)", "unable to parse requirement: found '=', expected: ',', ')' or identifier".to_owned()),
        ("x==a==b", "found '==', expected: ',' or 'end of string'".to_owned()),
        ("!x=a", "found '=', expected: ',' or 'end of string'".to_owned()),
        ("x=(", "unable to parse requirement: found '(', expected: identifier".to_owned()),
        ("!", "unable to parse requirement: found '', expected: identifier".to_owned()),
        (
            "x>a",
            "unable to parse requirement: values[0]: Invalid value: \"a\": for 'Gt', 'Lt' operators, the value must be an integer".to_owned(),
        ),
        (
            "x=a||y",
            format!("unable to parse requirement: values[0][x]: Invalid value: \"a||y\": {label_value_msg}"),
        ),
        (
            "-x=1",
            "unable to parse requirement: <nil>: Invalid value: \"-x\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')".to_owned(),
        ),
    ];
    for (input, want) in cases {
        let err = Selector::parse(input).expect_err(input);
        assert_eq!(err.to_string(), want, "{input:?}");
    }
}

#[test]
fn nul_ends_the_input_as_upstream() {
    assert_eq!(
        Selector::parse("x=a \0junk").map(|s| s.to_string()),
        Ok("x=a".to_owned())
    );
    assert_eq!(
        Selector::parse("x=a\0junk").map_err(|e| e.to_string()),
        Err("found 'junk', expected: ',' or 'end of string'".to_owned())
    );
    // A NUL right after a symbol is swallowed with it; at the start of a token it ends the input.
    assert_eq!(
        Selector::parse("x=a,\0y").map(|s| s.to_string()),
        Ok("x=a,y".to_owned())
    );
    assert_eq!(
        Selector::parse("x=a, \0y").map_err(|e| e.to_string()),
        Err("found '', expected: identifier after ','".to_owned())
    );
}

#[test]
fn matches_labels() {
    let set = labels(&[("app", "web"), ("tier", "front"), ("n", "5")]);
    let cases = [
        ("", true),
        ("app=web", true),
        ("app==web", true),
        ("app=db", false),
        ("app!=db", true),
        ("missing!=x", true),
        ("app in (web,db)", true),
        ("app notin (web)", false),
        ("missing notin (web)", true),
        ("app", true),
        ("missing", false),
        ("!missing", true),
        ("!app", false),
        ("n>4", true),
        ("n>5", false),
        ("n<6", true),
        ("app>1", false),
        ("missing<1", false),
        ("app=web,tier=back", false),
        ("app=web,tier in (front)", true),
    ];
    for (input, want) in cases {
        let sel = Selector::parse(input).expect(input);
        assert_eq!(sel.matches(&set), want, "{input:?}");
    }
}

#[test]
fn everything_and_nothing() {
    assert!(Selector::everything().is_empty());
    assert!(Selector::everything().matches(&BTreeMap::new()));
    assert!(!Selector::nothing().is_empty());
    assert!(!Selector::nothing().matches(&BTreeMap::new()));
    assert_eq!(Selector::nothing().to_string(), "");
    assert_eq!(
        Selector::from_optional_label_selector(None),
        Ok(Selector::nothing())
    );
}

fn expr(key: &str, op: &str, values: Option<&[&str]>) -> LabelSelectorRequirement {
    LabelSelectorRequirement {
        key: key.to_owned(),
        operator: op.to_owned(),
        values: values.map(|v| v.iter().map(|s| (*s).to_owned()).collect()),
    }
}

#[test]
fn converts_label_selector() {
    let empty = LabelSelector::default();
    let sel = Selector::from_label_selector(&empty).expect("empty");
    assert!(sel.is_empty());
    assert!(sel.matches(&labels(&[("a", "b")])));

    let full = LabelSelector {
        match_labels: Some(labels(&[("app", "web")])),
        match_expressions: Some(vec![
            expr("tier", "In", Some(&["front", "back"])),
            expr("env", "NotIn", Some(&["prod"])),
            expr("canary", "DoesNotExist", None),
            expr("app", "Exists", None),
        ]),
    };
    let sel = Selector::from_label_selector(&full).expect("full");
    assert_eq!(
        sel.to_string(),
        "app=web,app,!canary,env notin (prod),tier in (back,front)"
    );
    assert!(sel.matches(&labels(&[("app", "web"), ("tier", "back")])));
    assert!(!sel.matches(&labels(&[
        ("app", "web"),
        ("tier", "back"),
        ("canary", "1")
    ])));
    assert_eq!(sel.requires_exact_match("app"), Some("web"));
    assert_eq!(sel.requires_exact_match("tier"), None);
}

#[test]
fn label_selector_errors() {
    let bad_op = LabelSelector {
        match_expressions: Some(vec![expr("a", "Gt", Some(&["1"]))]),
        ..LabelSelector::default()
    };
    assert_eq!(
        Selector::from_label_selector(&bad_op).map_err(|e| e.to_string()),
        Err("\"Gt\" is not a valid label selector operator".to_owned())
    );
    let no_values = LabelSelector {
        match_expressions: Some(vec![expr("a", "In", None)]),
        ..LabelSelector::default()
    };
    assert_eq!(
        Selector::from_label_selector(&no_values).map_err(|e| e.to_string()),
        Err("values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't be empty".to_owned())
    );
    let exists_with_values = LabelSelector {
        match_expressions: Some(vec![expr("a", "Exists", Some(&["x"]))]),
        ..LabelSelector::default()
    };
    assert_eq!(
        Selector::from_label_selector(&exists_with_values).map_err(|e| e.to_string()),
        Err("values: Invalid value: []string{\"x\"}: values set must be empty for exists and does not exist".to_owned())
    );
    let bad_key = LabelSelector {
        match_labels: Some(labels(&[("a b", "x")])),
        ..LabelSelector::default()
    };
    let err = Selector::from_label_selector(&bad_key).expect_err("bad key");
    assert!(
        err.to_string()
            .starts_with("key: Invalid value: \"a b\": name part must consist")
    );
}

#[test]
fn validity_of_assorted_inputs() {
    let valid = [
        "\rx",
        "this-is-a-dns.domain.com/key-with-dash",
        "0.1.2.domain/99 notin (10.10.100.1, tick.tack.clock)",
        "foo  in\t (abc)",
        "x notin\n (abc)",
        "x notin (abc,,def),bar,z in (),w",
        "x notin ( )",
        "x notin (, a)",
        "a ",
        "a in (x,y,notin, z,in)",
        "notin=in",
    ];
    for input in valid {
        assert!(Selector::parse(input).is_ok(), "{input:?}");
    }
    let invalid = [
        "x=a||y=b",
        "x,,y",
        ",x,y",
        "x nott in (y)",
        "a in (xyz),",
        "a in (xyz)b notin ()",
        "a in (xyz abc)",
        "a notin(",
        "a (",
        "(",
        "x<a",
    ];
    for input in invalid {
        assert!(Selector::parse(input).is_err(), "{input:?}");
    }
    let sel = Selector::parse("a in (x,y,notin, z,in)").expect("parse");
    assert_eq!(sel.to_string(), "a in (in,notin,x,y,z)");
    assert!(
        Selector::parse("notin=in")
            .expect("parse")
            .matches(&labels(&[("notin", "in")]))
    );
}
