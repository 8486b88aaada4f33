use super::*;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    connectors: Vec<ConnectorConfig>,
}

fn parse(text: &str) -> Result<Vec<ConnectorConfig>, String> {
    toml::from_str::<File>(text)
        .map(|f| f.connectors)
        .map_err(|e| e.to_string())
}

fn env(var: &str) -> Option<String> {
    match var {
        "OKTA_TOKEN" => Some("00okta-secret-token".to_owned()),
        "API_KEY" => Some("key-from-env-123".to_owned()),
        _ => None,
    }
}

fn validate(text: &str) -> Result<Vec<Connector>, ConfigError> {
    validate_connectors_with(&parse(text).unwrap(), &env)
}

const OKTA: &str = r#"
[[connectors]]
name = "okta-prod"
type = "okta"
base_url = "https://example.okta.com/"
token_env = "OKTA_TOKEN"
"#;

#[test]
fn okta_defaults() {
    let c = validate(OKTA).unwrap().remove(0);
    assert_eq!(c.name, "okta-prod");
    assert_eq!(c.format, "okta");
    assert_eq!(c.interval, Duration::from_secs(60));
    assert_eq!(c.start_lookback, Duration::from_secs(3600));
    assert_eq!(c.limits.max_response_bytes, 16 << 20);
    assert_eq!(c.limits.max_pages_per_poll, 100);
    let ep = &c.endpoint;
    assert_eq!(
        ep.url.to_string(),
        "https://example.okta.com/api/v1/logs?sortOrder=ASCENDING&limit=1000"
    );
    assert_eq!(ep.headers.len(), 1);
    assert_eq!(ep.headers[0].0, http::header::AUTHORIZATION);
    assert_eq!(ep.headers[0].1.expose(), "SSWS 00okta-secret-token");
    assert_eq!(ep.since_param.as_deref(), Some("since"));
    assert_eq!(ep.time_field, Some(JsonPath::parse("published")));
    assert_eq!(ep.id_field, Some(JsonPath::parse("uuid")));
    assert_eq!(ep.pagination, Pagination::Link);
}

#[test]
fn secrets_are_not_in_debug_output() {
    let text = r#"
[[connectors]]
name = "api"
type = "http_json"
url = "https://api.example.com/v1/events"
token = "inline-secret-token-xyz"
headers = [
  { name = "X-Api-Key", value_env = "API_KEY" },
  { name = "X-Other", value = "inline-header-secret" },
]
"#;
    let raw = parse(text).unwrap();
    let raw_debug = format!("{raw:?}");
    assert!(
        !raw_debug.contains("inline-secret-token-xyz"),
        "{raw_debug}"
    );
    assert!(!raw_debug.contains("inline-header-secret"), "{raw_debug}");
    let valid = validate_connectors_with(&raw, &env).unwrap();
    let debug = format!("{valid:?}");
    for secret in [
        "inline-secret-token-xyz",
        "inline-header-secret",
        "key-from-env-123",
    ] {
        assert!(!debug.contains(secret), "{secret} leaked in {debug}");
    }
    // The values are there, only hidden.
    let headers = &valid[0].endpoint.headers;
    assert!(headers
        .iter()
        .any(|(n, v)| n == "authorization" && v.expose() == "Bearer inline-secret-token-xyz"));
    assert!(headers
        .iter()
        .any(|(n, v)| n == "x-api-key" && v.expose() == "key-from-env-123"));

    let okta = format!("{:?}", validate(OKTA).unwrap());
    assert!(!okta.contains("00okta-secret-token"), "{okta}");
}

#[test]
fn unknown_keys_are_rejected() {
    let e = parse(&format!("{OKTA}\nbase_ulr = \"https://x\"\n")).unwrap_err();
    assert!(e.contains("unknown field `base_ulr`"), "{e}");
    let e = parse(
        r#"
[[connectors]]
name = "x"
type = "http_json"
url = "https://a/b"
headers = [{ name = "A", valeu = "b" }]
"#,
    )
    .unwrap_err();
    assert!(e.contains("unknown field `valeu`"), "{e}");
    let e = parse("[[connectors]]\nname = \"x\"\ntype = \"splunk\"\n").unwrap_err();
    assert!(e.contains("okta") && e.contains("http_json"), "{e}");
}

#[test]
fn keys_of_the_other_type_are_rejected() {
    let e = validate(&format!("{OKTA}records = \"data\"\n")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "connector \"okta-prod\": `records` is not valid for type = \"okta\""
    );
    let e = validate(
        "[[connectors]]\nname = \"g\"\ntype = \"http_json\"\nurl = \"https://a/b\"\nbase_url = \"https://x\"\n",
    )
    .unwrap_err();
    assert!(e.to_string().contains("`base_url` is not valid"), "{e}");
}

#[test]
fn semantic_errors_name_the_key() {
    let cases: &[(&str, &str)] = &[
        (
            "name = \"a\"\ntype = \"okta\"\ntoken = \"t1234\"\n",
            "`base_url` is required",
        ),
        (
            "name = \"a\"\ntype = \"okta\"\nbase_url = \"https://x.okta.com\"\n",
            "`token` or `token_env` is required",
        ),
        (
            "name = \"a\"\ntype = \"okta\"\nbase_url = \"ftp://x\"\ntoken = \"t1234\"\n",
            "`base_url` must start with https://",
        ),
        (
            "name = \"a\"\ntype = \"okta\"\nbase_url = \"https://x\"\ntoken_env = \"NOPE\"\n",
            "environment variable \"NOPE\"",
        ),
        (
            "name = \"a\"\ntype = \"http_json\"\nurl = \"https://x/y\"\nsince_param = \"since\"\n",
            "`since_param` needs `time_field`",
        ),
        (
            "name = \"a\"\ntype = \"http_json\"\nurl = \"https://x/y\"\npagination = \"next_field\"\n",
            "`next_field` is required",
        ),
        (
            "name = \"a\"\ntype = \"http_json\"\nurl = \"https://x/y\"\nauth = \"header\"\ntoken = \"t1234\"\n",
            "`auth_header` is required",
        ),
        (
            "name = \"a b\"\ntype = \"http_json\"\nurl = \"https://x/y\"\n",
            "`name` must be",
        ),
        (
            "name = \"a\"\ntype = \"http_json\"\nurl = \"https://x/y\"\ninterval_secs = 0\n",
            "`interval_secs` must be at least 1",
        ),
        (
            "name = \"a\"\ntype = \"http_json\"\nurl = \"https://x/y\"\ntoken = \"t1234\"\ntoken_env = \"API_KEY\"\n",
            "`token_env` cannot be set together",
        ),
    ];
    for (body, expected) in cases {
        let e = validate(&format!("[[connectors]]\n{body}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(expected), "{body}: {e}");
        assert!(!e.contains("t1234"), "secret in error: {e}");
    }
}

#[test]
fn duplicate_names_are_rejected() {
    let e = validate(&format!("{OKTA}{OKTA}")).unwrap_err();
    assert!(
        matches!(e, ConfigError::DuplicateName(ref n) if n == "okta-prod"),
        "{e}"
    );
}

#[test]
fn generic_connector_full() {
    let text = r#"
[[connectors]]
name = "vendor"
type = "http_json"
url = "http://127.0.0.1:8080/api/events"
format = "vendor_audit"
interval_secs = 30
token_env = "API_KEY"
auth = "header"
auth_header = "X-Auth"
query = { order = "asc", "page size" = "50" }
records = "data.items"
time_field = "meta.ts"
id_field = "id"
since_param = "from"
until_param = "to"
time_format = "epoch_secs"
pagination = "next_field"
next_field = "paging.cursor"
cursor_param = "cursor"
max_requests_per_minute = 10
"#;
    let c = validate(text).unwrap().remove(0);
    assert_eq!(c.format, "vendor_audit");
    assert_eq!(c.interval, Duration::from_secs(30));
    assert_eq!(c.limits.max_requests_per_minute.get(), 10);
    let ep = &c.endpoint;
    assert_eq!(
        ep.url.to_string(),
        "http://127.0.0.1:8080/api/events?order=asc&page%20size=50"
    );
    assert_eq!(ep.records, JsonPath::parse("data.items"));
    assert_eq!(ep.time_format, TimeFormat::EpochSecs);
    assert_eq!(ep.until_param.as_deref(), Some("to"));
    assert_eq!(
        ep.pagination,
        Pagination::NextField {
            path: JsonPath::parse("paging.cursor"),
            cursor_param: Some("cursor".to_owned())
        }
    );
    assert!(ep
        .headers
        .iter()
        .any(|(n, v)| n == "x-auth" && v.expose() == "key-from-env-123"));
}

#[test]
fn generic_defaults() {
    let c = validate("[[connectors]]\nname = \"g\"\ntype = \"http_json\"\nurl = \"https://x/y\"\n")
        .unwrap()
        .remove(0);
    assert_eq!(c.format, "json");
    assert!(c.endpoint.records.is_root());
    assert!(c.endpoint.headers.is_empty());
    assert_eq!(c.endpoint.pagination, Pagination::None);
    assert_eq!(c.endpoint.time_format, TimeFormat::Rfc3339);
}
