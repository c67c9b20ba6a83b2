use super::*;

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const QNAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

#[test]
fn dns1123_subdomain() {
    for ok in [
        "a",
        "abc",
        "a-b",
        "a.b",
        "example.com",
        "0",
        "a1.b2.c3",
        &"a".repeat(253),
    ] {
        assert!(is_dns1123_subdomain(ok).is_empty(), "{ok}");
    }
    for bad in [
        "", "A", "Foo_Bar", "-a", "a-", "a..b", ".a", "a.", "a_b", "é",
    ] {
        assert_eq!(
            is_dns1123_subdomain(bad),
            vec![SUBDOMAIN_MSG.to_owned()],
            "{bad}"
        );
    }
    assert_eq!(
        is_dns1123_subdomain(&"a".repeat(254)),
        vec!["must be no more than 253 characters".to_owned()]
    );
}

#[test]
fn dns1123_label() {
    for ok in ["a", "a-b", "0a", &"a".repeat(63)] {
        assert!(is_dns1123_label(ok).is_empty(), "{ok}");
    }
    assert_eq!(
        is_dns1123_label("a.b"),
        vec!["must not contain dots".to_owned()]
    );
    assert_eq!(is_dns1123_label("A"), vec![LABEL_MSG.to_owned()]);
    assert_eq!(is_dns1123_label(""), vec![LABEL_MSG.to_owned()]);
    assert_eq!(
        is_dns1123_label(&"a".repeat(64)),
        vec!["must be no more than 63 characters".to_owned()]
    );
}

#[test]
fn dns1035_label() {
    assert!(is_dns1035_label("my-svc").is_empty());
    assert!(is_dns1035_label("a").is_empty());
    for bad in ["1abc", "", "a-", "A", "a.b"] {
        assert_eq!(is_dns1035_label(bad).len(), 1, "{bad}");
    }
    assert!(is_dns1035_label("1abc")[0].starts_with("a DNS-1035 label must consist"));
}

#[test]
fn qualified_name() {
    for ok in [
        "app",
        "a.b-c_d",
        "example.com/app",
        "k8s.io/x",
        "A1",
        &"a".repeat(63),
    ] {
        assert!(is_qualified_name(ok).is_empty(), "{ok}");
    }
    assert_eq!(is_qualified_name("-app"), vec![QNAME_MSG.to_owned()]);
    assert_eq!(
        is_qualified_name(""),
        vec![
            "name part must be non-empty".to_owned(),
            QNAME_MSG.to_owned()
        ]
    );
    assert_eq!(
        is_qualified_name("/app"),
        vec!["prefix part must be non-empty".to_owned()]
    );
    let bad_prefix = is_qualified_name("Example.com/app");
    assert_eq!(bad_prefix.len(), 1);
    assert!(bad_prefix[0].starts_with("prefix part a lowercase RFC 1123 subdomain"));
    assert_eq!(
        is_qualified_name("a/b/c"),
        vec!["a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')".to_owned()]
    );
    assert_eq!(
        is_qualified_name(&"a".repeat(64)),
        vec!["name part must be no more than 63 characters".to_owned()]
    );
}

#[test]
fn label_value() {
    for ok in ["", "v1", "my_value", "A.b-C"] {
        assert!(is_valid_label_value(ok).is_empty(), "{ok}");
    }
    assert_eq!(
        is_valid_label_value("a b"),
        vec!["a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".to_owned()]
    );
    assert_eq!(is_valid_label_value(&"a".repeat(64)).len(), 1);
}

#[test]
fn identifiers_and_env_names() {
    assert!(is_c_identifier("MY_VAR1").is_empty());
    assert!(is_c_identifier("_x").is_empty());
    assert_eq!(
        is_c_identifier("1x"),
        vec!["a valid C identifier must start with alphabetic character or '_', followed by a string of alphanumeric characters or '_' (e.g. 'my_name',  or 'MY_NAME',  or 'MyName', regex used for validation is '[A-Za-z_][A-Za-z0-9_]*')".to_owned()]
    );
    assert!(is_env_var_name("my.env-name").is_empty());
    assert_eq!(is_env_var_name("1x").len(), 1);
    assert_eq!(
        is_env_var_name("..x"),
        vec!["must not start with '..'".to_owned()]
    );
    assert_eq!(is_env_var_name("."), vec!["must not be '.'".to_owned()]);
    assert!(is_relaxed_env_var_name("1 weird:name").is_empty());
    assert_eq!(
        is_relaxed_env_var_name("a=b"),
        vec![RELAXED_ENV_VAR_NAME_ERR.to_owned()]
    );
    assert_eq!(
        is_relaxed_env_var_name(""),
        vec!["environment variable name must be non-empty".to_owned()]
    );
}

#[test]
fn misc_validators() {
    assert!(is_valid_port_num(80).is_empty());
    for bad in [0, 65536, -1] {
        assert_eq!(
            is_valid_port_num(bad),
            vec!["must be between 1 and 65535, inclusive".to_owned()]
        );
    }
    assert!(is_valid_port_name("http").is_empty());
    assert_eq!(
        is_valid_port_name("-1--"),
        vec![
            "must contain at least one letter (a-z)".to_owned(),
            "must not contain consecutive hyphens".to_owned(),
            "must not begin or end with a hyphen".to_owned(),
        ]
    );
    assert!(is_valid_percent("50%").is_empty());
    assert_eq!(is_valid_percent("%").len(), 1);
    assert!(is_config_map_key("key.name").is_empty());
    assert_eq!(is_config_map_key("a/b").len(), 1);
    assert!(is_http_header_name("X-Header").is_empty());
    assert!(is_wildcard_dns1123_subdomain("*.example.com").is_empty());
    assert_eq!(is_wildcard_dns1123_subdomain("example.com").len(), 1);
}

#[test]
fn ip_addresses() {
    let path = Path::new("spec").child("clusterIP");
    for ok in ["10.0.0.1", "0.0.0.0", "2001:db8::1", "::1"] {
        assert!(is_valid_ip(&path, ok).is_empty(), "{ok}");
    }
    let cases = [
        (
            "foo",
            "spec.clusterIP: Invalid value: \"foo\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        ),
        (
            "010.0.0.1",
            "spec.clusterIP: Invalid value: \"010.0.0.1\": must not have leading 0s",
        ),
        (
            "::ffff:1.2.3.4",
            "spec.clusterIP: Invalid value: \"::ffff:1.2.3.4\": must not be an IPv4-mapped IPv6 address",
        ),
        (
            "2001:DB8::1",
            "spec.clusterIP: Invalid value: \"2001:DB8::1\": must be in canonical form (\"2001:db8::1\")",
        ),
        (
            "1.2.3.4.5",
            "spec.clusterIP: Invalid value: \"1.2.3.4.5\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        ),
    ];
    for (value, want) in cases {
        let errs = is_valid_ip(&path, value);
        assert_eq!(errs.len(), 1, "{value}");
        assert_eq!(errs[0].to_string(), want);
    }
    assert_eq!(is_valid_ipv4(&path, "::1").len(), 1);
    assert!(is_valid_ipv4(&path, "1.2.3.4").is_empty());
}
