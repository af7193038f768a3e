//! Every request body of the API, generated and mangled: the real router on a temporary
//! SQLite database, called in process (tower `oneshot`) with the demo accounts' tokens.
//! Whatever the body — shaped like the endpoint's schema with valid, odd or wrongly typed
//! values, cut short, nested 10,000 deep, not UTF-8, not JSON at all, too large — the answer
//! is never a panic and never a 5xx, and every refusal is JSON `{"code": "ekey.…",
//! "message": "…"}`.
//!
//! The endpoints and their schemas come from the OpenAPI document the handlers generate,
//! so a new endpoint is covered without a change here; which tokens get past each one's
//! authentication is found out at the start. Field values that must be valid for a
//! handler to get anywhere (credit codes, ID numbers, kinds…) come from pools by field name.
//!
//! A proptest, not a cargo-fuzz target: the server would bring sqlx, SQLite, tokio, Argon2
//! and the PDF and image stacks into an instrumented libFuzzer build (many minutes of build
//! for CI), each input costs database transactions (milliseconds, not microseconds), and
//! the database keeps what earlier inputs did, so a libFuzzer reproducer would not replay
//! alone. Here a failure shrinks to a small body and is printed with its request.
//! `PROPTEST_CASES` sets the number of cases (default 1000 bodies and 200 OCSP requests).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use chrono::{DateTime, Utc};
use ekey_domain::clock::ManualClock;
use ekey_server::Config;
use ekey_server::config::MailTransport;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::strategy::Union;
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};
use serde_json::{Map, Value, json};
use tower::ServiceExt;

/// The demo logins whose tokens are tried (`None`, no token, is tried too).
const LOGINS: [&str; 4] = ["demo@ekey.example", "agency-320000", "provider", "admin"];
const PASSWORD: &str = "ekey-demo-2026";

/// The largest JSON body the API reads (`DefaultBodyLimit` in `api::build`).
const JSON_LIMIT: usize = 256 * 1024;

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ------------------------------------------------------------------ instance --

struct Instance {
    rt: tokio::runtime::Runtime,
    router: axum::Router,
    /// Bearer tokens, in the order of `LOGINS`.
    tokens: Vec<String>,
    /// Ids that exist: the demo enterprise's draft request.
    ids: Vec<String>,
    _dir: tempfile::TempDir,
}

struct Answer {
    status: StatusCode,
    content_type: String,
    body: Vec<u8>,
}

impl Instance {
    fn start() -> Instance {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            database_url: format!("sqlite:{}", dir.path().join("ekey.db").display()),
            data_dir: dir.path().join("data"),
            public_url: Some("http://127.0.0.1:8080".into()),
            demo: true,
            mail_transport: MailTransport::Dev,
            ..Config::default()
        };
        let start: DateTime<Utc> = DateTime::parse_from_rfc3339("2026-02-12T10:00:00+08:00")
            .unwrap()
            .with_timezone(&Utc);
        let router = rt.block_on(async {
            let state = ekey_server::build(config, Arc::new(ManualClock::new(start)))
                .await
                .unwrap();
            ekey_server::demo::seed(state.store.as_ref()).await.unwrap();
            ekey_server::api::router(state)
        });
        let mut instance = Instance {
            rt,
            router,
            tokens: Vec::new(),
            ids: Vec::new(),
            _dir: dir,
        };
        for login in LOGINS {
            let body = json!({"login": login, "password": PASSWORD});
            let answer = instance.send_json(Method::POST, "/api/v1/sessions", None, &body);
            assert_eq!(answer.status, StatusCode::OK, "login {login}");
            let v: Value = serde_json::from_slice(&answer.body).unwrap();
            instance
                .tokens
                .push(v["token"].as_str().unwrap().to_string());
        }
        let draft = json!({
            "kind": "first",
            "licence_types": ["import_licence", "export_licence"],
            "login_name": {"mode": "allocate"},
            "authorised_user": {"name": "李明", "id_number": "11010519491231002X",
                                "mobile": "13912345678", "email": "demo@ekey.example"},
        });
        let token = instance.tokens[0].clone();
        let answer = instance.send_json(Method::POST, "/api/v1/requests", Some(&token), &draft);
        let created: Value = serde_json::from_slice(&answer.body).unwrap_or_default();
        if let Some(id) = created["id"].as_str() {
            // Submitted, so that its scans can be uploaded.
            let path = format!("/api/v1/requests/{id}/submit");
            instance.send(
                Method::POST,
                &path,
                Some(&token),
                None,
                Vec::new(),
                [127, 0, 0, 1],
            );
            instance.ids.push(id.to_string());
        }
        instance
    }

    fn send_json(&self, method: Method, path: &str, token: Option<&str>, body: &Value) -> Answer {
        self.send(
            method,
            path,
            token,
            Some("application/json"),
            serde_json::to_vec(body).unwrap(),
            [127, 0, 0, 1],
        )
    }

    fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
        ip: [u8; 4],
    ) -> Answer {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "127.0.0.1:8080");
        if let Some(t) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if let Some(c) = content_type {
            request = request.header(header::CONTENT_TYPE, c);
        }
        let mut request = request.body(Body::from(body)).unwrap();
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from((ip, 40000))));
        self.rt.block_on(async {
            let response = self.router.clone().oneshot(request).await.unwrap();
            let status = response.status();
            let content_type = response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let body = axum::body::to_bytes(response.into_body(), 64 * 1024 * 1024)
                .await
                .unwrap()
                .to_vec();
            Answer {
                status,
                content_type,
                body,
            }
        })
    }
}

/// No 5xx; an API refusal is JSON with a stable code and a message.
fn check(what: &str, answer: &Answer) -> Result<(), TestCaseError> {
    let text = String::from_utf8_lossy(&answer.body);
    prop_assert!(
        !answer.status.is_server_error(),
        "{what}: {} {text}",
        answer.status
    );
    if answer.status.is_client_error() {
        prop_assert!(
            answer.content_type.starts_with("application/json"),
            "{what}: {} with content type {:?}: {text}",
            answer.status,
            answer.content_type
        );
        let v: Value = serde_json::from_slice(&answer.body).map_err(|e| {
            TestCaseError::fail(format!("{what}: error body not JSON ({e}): {text}"))
        })?;
        let code = v["code"].as_str().unwrap_or("");
        let message = v["message"].as_str().unwrap_or("");
        prop_assert!(code.starts_with("ekey."), "{what}: no code in {text}");
        prop_assert!(!message.trim().is_empty(), "{what}: no message in {text}");
    }
    Ok(())
}

// ----------------------------------------------------------------- endpoints --

struct Endpoint {
    method: Method,
    /// The path with `{param}` placeholders.
    template: String,
    /// The JSON schema of the body; `None` when the body is not JSON (uploads).
    schema: Option<Value>,
    /// Which tokens get past authentication (indexes into `LOGINS`; `None` is no token).
    roles: Vec<Option<usize>>,
}

/// The POST, PUT and PATCH operations of the OpenAPI document that take a body.
fn endpoints() -> (Vec<Endpoint>, Map<String, Value>) {
    let doc = serde_json::to_value(ekey_server::api::openapi()).unwrap();
    let components = doc["components"]["schemas"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (name, method) in [
            ("post", Method::POST),
            ("put", Method::PUT),
            ("patch", Method::PATCH),
        ] {
            let Some(op) = item.get(name) else { continue };
            let content = &op["requestBody"]["content"];
            let schema = content.get("application/json").map(|c| c["schema"].clone());
            if schema.is_none() && content.as_object().is_none_or(Map::is_empty) {
                // No body at all (e.g. `…/submit`): nothing to generate.
                continue;
            }
            out.push(Endpoint {
                method,
                template: path.clone(),
                schema,
                roles: Vec::new(),
            });
        }
    }
    (out, components)
}

/// Fills a path's `{param}`s: an id that exists, or one that does not, or junk.
fn fill_path(template: &str, ids: &[String], pick: usize) -> String {
    // The ids that exist most of the time, so that the handlers get past their lookups.
    let choices: Vec<String> = std::iter::repeat_n(ids, 4)
        .flatten()
        .cloned()
        .chain([
            "0196f0a4-7b3c-7def-8000-000000000000".to_string(),
            "320000".to_string(),
            "3a0f5c21".to_string(),
            "id_card".to_string(),
            "%E7%A0%81%00".to_string(),
            "x".repeat(300),
        ])
        .collect();
    let mut out = String::new();
    let mut rest = template;
    let mut n = 0;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').map_or(rest.len(), |c| open + c + 1);
        out.push_str(&rest[..open]);
        let param = &rest[open + 1..close - 1];
        let value = match param {
            "province" if n % 2 == 0 => "320000".to_string(),
            "item" => "id_card".to_string(),
            _ => choices[(pick + n) % choices.len()].clone(),
        };
        out.push_str(&value);
        rest = &rest[close..];
        n += 1;
    }
    out.push_str(rest);
    out
}

// ---------------------------------------------------------------- generators --

/// Values that get a field past its checks, by field name.
fn pool(field: &str) -> Vec<String> {
    let v = |items: &[&str]| items.iter().map(|s| s.to_string()).collect();
    match field {
        "credit_code" => v(&[
            "91320106MA1XYW0A36",
            "91310000MA1FL5LX4N",
            "91440101MA5CJQ4N59",
        ]),
        "id_number" | "collector_id_number" => v(&["11010519491231002X", "110101199003070011"]),
        "mobile" => v(&["13912345678", "+86 13800138000"]),
        "email" => v(&[
            "demo@ekey.example",
            "new.user@example.cn",
            "agency-320000@ekey.example",
        ]),
        "login" => v(&[
            "demo@ekey.example",
            "agency-320000",
            "provider",
            "new-clerk",
        ]),
        "password" | "new_password" => v(&["ekey-demo-2026", "Passw0rd2026"]),
        "current_password" | "old_password" => v(&["wrong-password-1"]),
        "province" => v(&["320000", "110000", "999999"]),
        "kind" => v(&[
            "first",
            "additional",
            "replacement",
            "reapplication",
            "renewal",
            "unlock",
            "cancellation",
        ]),
        "licence_types" => v(&["import_licence", "export_licence", "dual_use", "textiles"]),
        "mode" => v(&["allocate", "existing", "original"]),
        "value" => v(&["ekey_user01", "a"]),
        "method" => v(&["pickup", "mail", "window"]),
        "role" => v(&["agency", "provider", "admin", "enterprise"]),
        "reason" => v(&["keyCompromise", "superseded", "业务需要增加一把钥匙"]),
        "concerns" => v(&["id_card", "licence_types", "login_name", "authorised_user"]),
        "request_ids" => v(&["0196f0a4-7b3c-7def-8000-000000000000"]),
        "unlock_challenge" => v(&["00112233445566778899aabbccddeeff"]),
        "enterprise_name" | "name" | "display_name" | "legal_representative" => {
            v(&["南京示例进出口有限公司", "李明"])
        }
        "remark" => v(&["请补充清晰的身份证扫描件"]),
        "csr" | "certificate" | "signature" | "countersignature" => v(&["MAA=", "not base64"]),
        _ => v(&["example", "1"]),
    }
}

fn wrong_type() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        Just(json!(1e308)),
        Just(json!([])),
        Just(json!({})),
        Just(json!("")),
    ]
    .boxed()
}

fn odd_string() -> BoxedStrategy<String> {
    prop_oneof![
        select(vec![
            "",
            " ",
            "\u{3000}",
            "null",
            "0",
            "-1",
            "\u{0}",
            "\u{FEFF}",
            "\u{202E}abc",
            "😀",
            "../../etc/passwd",
            "'; DROP TABLE accounts; --",
            "<script>",
            "%00",
            "\\u0000",
        ])
        .prop_map(|s| s.to_string()),
        (1usize..20_000).prop_map(|n| "码".repeat(n)),
        "\\PC{0,64}",
        any::<String>(),
    ]
    .boxed()
}

fn any_json() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        odd_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

fn string_value(field: &str) -> BoxedStrategy<Value> {
    let pool = pool(field);
    prop_oneof![
        9 => select(pool).prop_map(Value::String),
        1 => odd_string().prop_map(Value::String),
    ]
    .boxed()
}

/// Resolves a `$ref` to the components, and an `allOf`/`anyOf`/`oneOf` to its alternatives.
fn alternatives<'a>(schema: &'a Value, components: &'a Map<String, Value>) -> Vec<&'a Value> {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap_or("");
        return components.get(name).into_iter().collect();
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(list) = schema[key].as_array()
            && !list.is_empty()
        {
            return list.iter().collect();
        }
    }
    vec![schema]
}

fn types(schema: &Value) -> Vec<&str> {
    match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ if schema["properties"].is_object() => vec!["object"],
        _ => vec![],
    }
}

/// Values of the shape `schema` gives, from the pools: what a well-behaved client sends
/// (the mutations come after, in `body`).
fn shaped(
    schema: &Value,
    components: &Map<String, Value>,
    field: &str,
    depth: u32,
) -> BoxedStrategy<Value> {
    if depth > 8 {
        return any_json();
    }
    let alternatives = alternatives(schema, components);
    if alternatives.len() != 1 || !std::ptr::eq(alternatives[0], schema) {
        let options: Vec<BoxedStrategy<Value>> = alternatives
            .into_iter()
            .map(|a| shaped(a, components, field, depth + 1))
            .collect();
        return match options.len() {
            0 => any_json(),
            _ => Union::new(options).boxed(),
        };
    }
    let mut options: Vec<(u32, BoxedStrategy<Value>)> = Vec::new();
    for t in types(schema) {
        let s = match t {
            "null" => Just(Value::Null).boxed(),
            "string" => string_value(field),
            "boolean" => any::<bool>().prop_map(Value::Bool).boxed(),
            "integer" | "number" => (0i64..100).prop_map(Value::from).boxed(),
            "array" => {
                let items = shaped(&schema["items"], components, field, depth + 1);
                prop::collection::vec(items, 0..4)
                    .prop_map(Value::Array)
                    .boxed()
            }
            "object" => object(schema, components, depth),
            _ => any_json(),
        };
        options.push((if t == "null" { 1 } else { 4 }, s));
    }
    if options.is_empty() {
        return any_json();
    }
    Union::new_weighted(options).boxed()
}

fn object(schema: &Value, components: &Map<String, Value>, depth: u32) -> BoxedStrategy<Value> {
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let properties: Vec<BoxedStrategy<Option<(String, Value)>>> = schema["properties"]
        .as_object()
        .map(|props| {
            props
                .iter()
                .map(|(name, s)| {
                    let owned = name.clone();
                    let value = shaped(s, components, name, depth + 1)
                        .prop_map(move |v| Some((owned.clone(), v)));
                    if required.contains(&name.as_str()) {
                        value.boxed()
                    } else {
                        prop_oneof![3 => value, 1 => Just(None)].boxed()
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    properties
        .prop_map(|fields| Value::Object(fields.into_iter().flatten().collect()))
        .boxed()
}

/// The value a well-behaved client sends first: the first choice everywhere. Sent with
/// every token at the start, to learn which roles an endpoint lets through.
fn skeleton(schema: &Value, components: &Map<String, Value>, field: &str, depth: u32) -> Value {
    if depth > 8 {
        return Value::Null;
    }
    let alternatives = alternatives(schema, components);
    if alternatives.len() != 1 || !std::ptr::eq(alternatives[0], schema) {
        return alternatives
            .iter()
            .map(|a| skeleton(a, components, field, depth + 1))
            .find(|v| !v.is_null())
            .unwrap_or(Value::Null);
    }
    match types(schema).into_iter().find(|t| *t != "null") {
        Some("string") => Value::String(pool(field).swap_remove(0)),
        Some("boolean") => Value::Bool(true),
        Some("integer" | "number") => Value::from(1),
        Some("array") => json!([skeleton(&schema["items"], components, field, depth + 1)]),
        Some("object") => Value::Object(
            schema["properties"]
                .as_object()
                .map(|props| {
                    props
                        .iter()
                        .map(|(k, s)| (k.clone(), skeleton(s, components, k, depth + 1)))
                        .collect()
                })
                .unwrap_or_default(),
        ),
        _ => Value::Null,
    }
}

/// One change to a well-formed value, somewhere in it.
#[derive(Clone, Debug)]
struct Mutation {
    /// Which node (in pre-order) is changed.
    at: Index,
    /// 0–1: replaced by `with`; 2: replaced by an odd string; 3: one of its fields or
    /// items removed; 4: a field `key` added.
    how: u8,
    with: Value,
    key: String,
    which: Index,
}

fn mutation() -> BoxedStrategy<Mutation> {
    (
        any::<Index>(),
        0u8..5,
        prop_oneof![wrong_type(), any_json()],
        "[a-z_]{1,12}",
        any::<Index>(),
        odd_string(),
    )
        .prop_map(|(at, how, with, key, which, odd)| Mutation {
            at,
            how,
            with: if how == 2 { Value::String(odd) } else { with },
            key,
            which,
        })
        .boxed()
}

fn nodes(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(nodes).sum(),
        Value::Object(o) => o.values().map(nodes).sum(),
        _ => 0,
    }
}

/// Calls `change` on node number `target` (pre-order) of `v`.
fn visit(
    v: &mut Value,
    target: usize,
    seen: &mut usize,
    change: &mut dyn FnMut(&mut Value),
) -> bool {
    if *seen == target {
        change(v);
        return true;
    }
    *seen += 1;
    match v {
        Value::Array(a) => a.iter_mut().any(|x| visit(x, target, seen, change)),
        Value::Object(o) => o.values_mut().any(|x| visit(x, target, seen, change)),
        _ => false,
    }
}

fn apply(v: &mut Value, m: &Mutation) {
    let target = m.at.index(nodes(v));
    visit(v, target, &mut 0, &mut |node| match (m.how, node) {
        (3, Value::Object(o)) if !o.is_empty() => {
            let key = o.keys().nth(m.which.index(o.len())).unwrap().clone();
            o.remove(&key);
        }
        (3, Value::Array(a)) if !a.is_empty() => {
            a.remove(m.which.index(a.len()));
        }
        (4, Value::Object(o)) => {
            o.insert(m.key.clone(), m.with.clone());
        }
        (_, node) => *node = m.with.clone(),
    });
}

/// JSON texts that parsers choke on.
fn pathological() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        (1usize..20_000).prop_map(|n| "[".repeat(n).into_bytes()),
        (1usize..5_000)
            .prop_map(|n| format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n)).into_bytes()),
        select(vec![
            "",
            " ",
            "null",
            "true",
            "0",
            "\"\"",
            "[]",
            "{}",
            "{",
            "}",
            "1e999999",
            "-0",
            "123456789012345678901234567890123456789012345678901234567890",
            "{\"kind\":\"first\",\"kind\":\"first\"}",
            "{\"a\":1}garbage",
            "\u{FEFF}{}",
            "{\"login\":\"\\ud800\"}",
            "{\"login\":\"\\u0000\"}",
            "NaN",
            "[1,]",
            "{'a':1}",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        // Just over the body limit: 413, as JSON.
        Just(format!("{{\"a\":\"{}\"}}", "x".repeat(JSON_LIMIT)).into_bytes()),
    ]
    .boxed()
}

/// A body for an endpoint with a JSON schema: the well-formed value, the value with a
/// change or two, its text cut, flipped or wrapped, or something else entirely.
fn body(value: BoxedStrategy<Value>) -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        5 => value.clone().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        3 => (value.clone(), prop::collection::vec(mutation(), 1..3)).prop_map(|(mut v, ms)| {
            for m in &ms {
                apply(&mut v, m);
            }
            serde_json::to_vec(&v).unwrap()
        }),
        1 => (value, any::<Index>(), any::<u8>(), 0u8..4).prop_map(|(v, at, byte, how)| {
            let mut text = serde_json::to_vec(&v).unwrap();
            let i = at.index(text.len() + 1);
            match how {
                0 => text.truncate(i),
                1 => text.insert(i, byte),
                2 => {
                    let mut b = vec![0xEF, 0xBB, 0xBF];
                    b.extend_from_slice(&text);
                    text = b;
                }
                _ => text.extend_from_slice(b",}"),
            }
            text
        }),
        1 => any_json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        1 => pathological(),
        1 => prop::collection::vec(any::<u8>(), 0..256),
    ]
    .boxed()
}

/// A body for an upload: bytes, or a small PNG changed at one byte.
fn upload_body() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..2048),
        (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| {
            let mut png = ekey_testkit::scenario::png(128);
            let i = at.index(png.len());
            png[i] = byte;
            png
        }),
    ]
    .boxed()
}

/// Mostly JSON; now and then a charset, another type, or none.
const CONTENT_TYPES: [Option<&str>; 12] = [
    Some("application/json"),
    Some("application/json"),
    Some("application/json"),
    Some("application/json"),
    Some("application/json"),
    Some("application/json"),
    Some("application/json"),
    Some("application/json"),
    Some("application/json"),
    Some("application/json; charset=utf-8"),
    Some("text/plain"),
    None,
];

// ---------------------------------------------------------------------- tests --

#[test]
fn no_body_makes_the_api_fail_or_answer_other_than_json() {
    let instance = Instance::start();
    let (mut endpoints, components) = endpoints();
    assert!(
        endpoints.len() >= 20,
        "only {} endpoints with a body in the OpenAPI document",
        endpoints.len()
    );
    // Which tokens each endpoint lets through: the first well-formed body, sent with
    // every token, is refused for want of a session or of the right role, or it is not.
    for e in &mut endpoints {
        let path = fill_path(&e.template, &instance.ids, 0);
        let (content_type, body) = match &e.schema {
            Some(schema) => (
                Some("application/json"),
                serde_json::to_vec(&skeleton(schema, &components, "", 0)).unwrap(),
            ),
            None => (Some("image/png"), ekey_testkit::scenario::png(128)),
        };
        for role in std::iter::once(None).chain((0..LOGINS.len()).map(Some)) {
            let token = role.map(|r| instance.tokens[r].as_str());
            let answer = instance.send(
                e.method.clone(),
                &path,
                token,
                content_type,
                body.clone(),
                [127, 0, 0, 1],
            );
            let v: Value = serde_json::from_slice(&answer.body).unwrap_or_default();
            let code = v["code"].as_str().unwrap_or("");
            if code != "ekey.auth.required" && code != "ekey.auth.wrong_role" {
                e.roles.push(role);
            }
        }
        if e.roles.is_empty() {
            // Reachable with none of the demo sessions (e.g. key sessions only): try all.
            e.roles = std::iter::once(None)
                .chain((0..LOGINS.len()).map(Some))
                .collect();
        }
    }

    let strategies: Vec<BoxedStrategy<(usize, Vec<u8>)>> = endpoints
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let bytes = match &e.schema {
                Some(schema) => body(shaped(schema, &components, "", 0)),
                None => upload_body(),
            };
            bytes.prop_map(move |b| (i, b)).boxed()
        })
        .collect();
    let case = (
        Union::new(strategies),
        any::<Index>(),
        any::<Index>(),
        0usize..CONTENT_TYPES.len(),
        any::<[u8; 2]>(),
        // A token of the wrong role, or none, one time in ten.
        prop::bool::weighted(0.1),
    );
    let mut runner = TestRunner::new(RunnerConfig {
        cases: cases(1000),
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    let tally = std::cell::RefCell::new(BTreeMap::<String, u32>::new());
    let result = runner.run(&case, |((i, bytes), role, id, ctype, ip, wrong_role)| {
        let e = &endpoints[i];
        let role = if wrong_role {
            // Now and then a token of the wrong role (or none).
            [None, Some(0), Some(1), Some(2), Some(3)][role.index(5)]
        } else {
            e.roles[role.index(e.roles.len())]
        };
        let mut path = fill_path(&e.template, &instance.ids, id.index(1 << 16));
        let content_type = if e.schema.is_some() {
            CONTENT_TYPES[ctype]
        } else {
            // An upload: downscaled on request half the time.
            if ctype % 2 == 0 {
                path.push_str("?fit=1");
            }
            [Some("image/png"), Some("application/octet-stream"), None][ctype % 3]
        };
        let token = role.map(|r| instance.tokens[r].as_str());
        let answer = instance.send(
            e.method.clone(),
            &path,
            token,
            content_type,
            bytes.clone(),
            // Many client addresses, so that the per-address login throttle does not end
            // up refusing every login.
            [10, 1, ip[0], ip[1]],
        );
        let v: Value = serde_json::from_slice(&answer.body).unwrap_or_default();
        tally
            .borrow_mut()
            .entry(format!(
                "{} {} {}",
                answer.status.as_u16(),
                v["code"].as_str().unwrap_or(""),
                e.template
            ))
            .and_modify(|n| *n += 1)
            .or_insert(1u32);
        let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(2000)]).into_owned();
        check(
            &format!(
                "{} {path} as {:?} ({content_type:?}) with {shown:?}",
                e.method,
                role.map(|r| LOGINS[r])
            ),
            &answer,
        )
    });
    // What the answers were (shown with --nocapture), and a check that the bodies still
    // get past the input checks to the handlers' own rules: a test that only ever met
    // "malformed" would pass without testing much.
    let tally = tally.into_inner();
    for (k, n) in &tally {
        eprintln!("{n:5} {k}");
    }
    if let Err(e) = result {
        panic!("{e}");
    }
    let total: u32 = tally.values().sum();
    let reached: u32 = tally
        .iter()
        .filter(|(k, _)| {
            let code = k.split(' ').nth(1).unwrap_or("");
            !code.starts_with("ekey.input.")
                && code != "ekey.auth.required"
                && code != "ekey.auth.wrong_role"
        })
        .map(|(_, n)| n)
        .sum();
    assert!(
        reached * 10 >= total,
        "only {reached} of {total} bodies got past the input checks"
    );
}

#[test]
fn no_bytes_make_the_ocsp_responder_fail() {
    let instance = Instance::start();
    let case = (prop::collection::vec(any::<u8>(), 0..512), 0u8..3);
    let mut runner = TestRunner::new(RunnerConfig {
        cases: cases(200),
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    let result = runner.run(&case, |(bytes, how)| {
        let answer = if how == 0 {
            instance.send(
                Method::POST,
                "/ocsp",
                None,
                Some("application/ocsp-request"),
                bytes.clone(),
                [127, 0, 0, 1],
            )
        } else {
            // GET: the request in base64 (RFC 6960 appendix A), or the bytes themselves,
            // percent-encoded into the path.
            use base64::Engine;
            let text = if how == 1 {
                base64::engine::general_purpose::STANDARD
                    .encode(&bytes)
                    .into_bytes()
            } else {
                bytes.clone()
            };
            let mut path = String::from("/ocsp/");
            for b in &text {
                path.push_str(&format!("%{b:02X}"));
            }
            instance.send(Method::GET, &path, None, None, Vec::new(), [127, 0, 0, 1])
        };
        prop_assert!(!answer.status.is_server_error(), "{}", answer.status);
        if answer.status == StatusCode::OK {
            prop_assert_eq!(answer.content_type.as_str(), "application/ocsp-response");
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
