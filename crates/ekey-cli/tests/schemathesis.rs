//! API fuzzing: schemathesis (PyPI; scripts/test installs it into `.venv-tools`) runs against
//! `/api/v1/openapi.json` of a real `ekey demo`, once per role with that role's bearer token
//! and once without one. Every answer must be a non-5xx whose status, content type and body
//! match the OpenAPI document.
//!
//! Before the runs the demo gets real objects — a completed first issue with its key,
//! certificate and shipment, a draft, a request under review — and schemathesis gets them
//! as dictionaries for the path ids and for the body fields whose valid values a generator
//! cannot guess (kinds, licence types, checksummed ID numbers), so the handlers' logic is
//! reached, not only their input checks. A fixed seed, a bounded number of examples and one
//! worker make a run reproducible.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ekey_testkit::scenario::{Portal, SIX, person};
use serde_json::{Value, json};

/// What scripts/test installs; the options below are schemathesis 4's.
const PIN: &str = "schemathesis==4.32.5";

/// Examples per operation and phase.
const MAX_EXAMPLES: u32 = 25;

/// A run that takes longer has hung.
const RUN_LIMIT: Duration = Duration::from_secs(100);

/// The checks, each a promise of the API contract: no 5xx; every status documented; the
/// documented content type (errors are JSON too); the documented body; input that breaks
/// the schema refused with a 4xx; a secured operation refusing a missing or wrong token;
/// an undocumented method answered 405. Left out: `positive_data_acceptance` (the schema
/// types most fields as plain strings while the handlers check formats, checksums and the
/// request's state, so "valid by the schema" is often rightly a 422 or 409),
/// `use_after_free` and `ensure_resource_availability` (nothing is deleted through the
/// API), and the header checks (no headers are documented or required).
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_schema_conformance,negative_data_rejection,ignored_auth,\
                      unsupported_method";

/// The schemathesis executable, from `$EKEY_TOOLS_BIN` (set by scripts/test) or the
/// repository's `.venv-tools/bin`; a failure, never a skip, when it is missing.
fn schemathesis() -> PathBuf {
    let bin = std::env::var_os("EKEY_TOOLS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv-tools/bin"));
    let program = bin.join("schemathesis");
    let version = Command::new(&program)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let Some(version) = version else {
        panic!(
            "{} does not run: install it with `{}/pip install {PIN}` (scripts/test does this)",
            program.display(),
            bin.display()
        );
    };
    assert!(
        version.contains("version 4."),
        "{version}: these options are schemathesis 4's; install `{PIN}` into {}",
        bin.display()
    );
    eprintln!("{version}");
    program
}

/// `ekey demo` on a free port of 127.0.0.1, stopped when dropped.
struct Demo {
    child: Child,
    base: String,
}

impl Demo {
    fn start(data: &Path) -> Demo {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ekey"))
            .env("RUST_LOG", "warn")
            .args(["demo", "--data"])
            .arg(data)
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting ekey demo");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // The banner's first line: "eKey demo is running: http://127.0.0.1:PORT/".
                if !sent
                    && line.contains("running")
                    && let Some(rest) = line.split("http://").nth(1)
                {
                    let _ = tx.send(format!("http://{}", rest.trim().trim_end_matches('/')));
                    sent = true;
                }
            }
        });
        let base = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(base) => base,
            Err(_) => {
                let _ = child.kill();
                panic!("ekey demo printed no URL within 60 s");
            }
        };
        Demo { child, base }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The objects the runs are pointed at.
struct Seed {
    request_ids: Vec<String>,
    numbers: Vec<String>,
    shipment_ids: Vec<String>,
    key_ids: Vec<String>,
    serials: Vec<String>,
    user_ids: Vec<String>,
    login_names: Vec<String>,
}

async fn seed(p: &Portal, admin: &str) -> Seed {
    let ent = p
        .login("demo@ekey.example")
        .await
        .expect("enterprise login");
    let provider = p.login("provider").await.expect("provider login");
    // The whole first-issue path: a completed request, its key, certificate and shipment.
    let key = ekey_testkit::scenario::active_key(p)
        .await
        .expect("first issue for the demo enterprise");
    // A draft, and a request waiting for the agency's review.
    let draft = p
        .expect(
            201,
            "POST",
            "/api/v1/requests",
            Some(&ent),
            Some(
                json!({"kind": "additional", "licence_types": ["export_licence"],
                        "login_name": {"mode": "allocate"}, "reason": "新增业务人员",
                        "authorised_user": person("liming@example.com")}),
            ),
        )
        .await
        .expect("a draft");
    let review = p
        .request_under_review(
            &ent,
            json!({"kind": "additional", "licence_types": ["dual_use"],
                   "login_name": {"mode": "allocate"}, "reason": "新增业务人员",
                   "authorised_user": person("liming@example.com")}),
            SIX,
        )
        .await
        .expect("a request under review");
    let requests = p
        .expect(200, "GET", "/api/v1/requests", Some(&ent), None)
        .await
        .expect("the enterprise's requests");
    let shipments = p
        .expect(200, "GET", "/api/v1/shipments", Some(&provider), None)
        .await
        .expect("shipments");
    let users = p
        .expect(200, "GET", "/api/v1/admin/users", Some(admin), None)
        .await
        .expect("staff accounts");
    let strings = |v: &Value, field: &str| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| o[field].as_str().map(str::to_string))
            .collect()
    };
    let mut request_ids = strings(&requests, "id");
    for id in [
        &key.request_id,
        draft["id"].as_str().unwrap_or_default(),
        &review,
    ] {
        if !request_ids.iter().any(|r| r == id) {
            request_ids.push(id.to_string());
        }
    }
    Seed {
        request_ids,
        numbers: strings(&requests, "number"),
        shipment_ids: strings(&shipments, "id"),
        key_ids: vec![key.key_id.clone()],
        serials: vec![key.certificate_serial.clone()],
        user_ids: strings(&users, "id"),
        login_names: vec![key.login_name.clone()],
    }
}

/// A TOML string list.
fn list(values: &[String]) -> String {
    let quoted: Vec<String> = values
        .iter()
        .map(|v| format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("[{}]", quoted.join(", "))
}

fn strs(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| v.to_string()).collect()
}

/// The schemathesis configuration: the dictionaries and where they are used. A dictionary
/// value is used with the given probability; otherwise the value is generated.
fn config(s: &Seed) -> String {
    let credit_code = ekey_server::demo::DEMO_CREDIT_CODE.to_string();
    let dictionaries: Vec<(&str, Vec<String>)> = vec![
        ("request_ids", s.request_ids.clone()),
        ("shipment_ids", s.shipment_ids.clone()),
        ("key_ids", s.key_ids.clone()),
        ("serials", s.serials.clone()),
        ("user_ids", s.user_ids.clone()),
        ("numbers", s.numbers.clone()),
        (
            "search_terms",
            [
                s.login_names.clone(),
                s.numbers.clone(),
                s.serials.clone(),
                vec![credit_code.clone()],
            ]
            .concat(),
        ),
        ("login_names", s.login_names.clone()),
        ("reasons", strs(&["新增业务人员", "原电子钥匙损坏"])),
        ("credit_codes", vec![credit_code]),
        (
            "kinds",
            strs(&[
                "first",
                "additional",
                "replacement",
                "reapplication",
                "renewal",
                "unlock",
                "cancellation",
            ]),
        ),
        (
            "licence_types",
            strs(&[
                "import_licence",
                "export_licence",
                "auto_import_mechanical",
                "auto_import_other",
                "dual_use",
                "agri_tariff_quota",
                "fertilizer_tariff_quota",
                "textiles",
            ]),
        ),
        (
            "login_name_modes",
            strs(&["allocate", "existing", "original"]),
        ),
        (
            "items",
            strs(&[
                "application_form",
                "business_licence",
                "confirmation_letter",
                "id_card",
                "power_of_attorney",
                "user_agreement",
                "unlock_form",
                "cancellation_form",
                "loss_statement",
            ]),
        ),
        ("provinces", strs(&["320000", "110000"])),
        ("id_numbers", strs(&["11010519491231002X"])),
        ("mobiles", strs(&["13912345678"])),
        (
            "emails",
            strs(&["liming@example.com", "new-user@example.com"]),
        ),
        ("methods", strs(&["window", "mail", "pickup"])),
        ("roles", strs(&["agency", "provider", "admin"])),
        (
            "statuses",
            strs(&["draft", "agency_review", "provider_review", "completed"]),
        ),
        (
            "revocation_reasons",
            strs(&["keyCompromise", "superseded", "cessationOfOperation"]),
        ),
    ];
    let mut out = String::new();
    out.push_str("[dictionaries]\n");
    for (name, values) in &dictionaries {
        if !values.is_empty() {
            out.push_str(&format!("{name} = {{ values = {} }}\n", list(values)));
        }
    }
    let used = |name: &str| {
        dictionaries
            .iter()
            .any(|(n, v)| *n == name && !v.is_empty())
    };
    // Body and query fields, wherever they occur.
    let fields = [
        ("body.kind", "kinds"),
        ("body.licence_types[*]", "licence_types"),
        ("body.login_name.mode", "login_name_modes"),
        ("body.login_name.value", "login_names"),
        ("body.authorised_user.id_number", "id_numbers"),
        ("body.authorised_user.mobile", "mobiles"),
        ("body.authorised_user.email", "emails"),
        ("body.contact.id_number", "id_numbers"),
        ("body.contact.mobile", "mobiles"),
        ("body.contact.email", "emails"),
        ("body.credit_code", "credit_codes"),
        ("body.province", "provinces"),
        ("body.method", "methods"),
        ("body.role", "roles"),
        ("body.email", "emails"),
        ("body.id_number", "id_numbers"),
        ("body.collector_id_number", "id_numbers"),
        ("body.mobile", "mobiles"),
        ("body.request_ids[*]", "request_ids"),
        ("body.concerns[*]", "items"),
        ("body.reason", "reasons"),
        ("query.number", "numbers"),
        ("query.credit_code", "credit_codes"),
        ("query.status", "statuses"),
        ("query.q", "search_terms"),
    ];
    out.push_str("\n[parameters]\n");
    for (key, dictionary) in fields {
        if used(dictionary) {
            out.push_str(&format!(
                "\"{key}\" = {{ dictionary = \"{dictionary}\", probability = 0.6 }}\n"
            ));
        }
    }
    // Path ids per kind of object, and fields that mean something else elsewhere (the
    // first entry matching an operation applies).
    let operations: [(&str, &[(&str, &str)]); 7] = [
        (
            r"^/api/v1/requests/\\{id\\}/materials/",
            &[("path.id", "request_ids"), ("path.item", "items")],
        ),
        (r"^/api/v1/requests/\\{id\\}", &[("path.id", "request_ids")]),
        (
            r"^/api/v1/shipments/\\{id\\}",
            &[("path.id", "shipment_ids")],
        ),
        (r"^/api/v1/keys/\\{id\\}", &[("path.id", "key_ids")]),
        (
            r"^/api/v1/certificates/\\{serial\\}",
            &[
                ("path.serial", "serials"),
                ("body.reason", "revocation_reasons"),
            ],
        ),
        (r"^/api/v1/admin/users/\\{id\\}", &[("path.id", "user_ids")]),
        (
            r"^/api/v1/agencies/\\{province\\}",
            &[("path.province", "provinces")],
        ),
    ];
    for (regex, bindings) in operations {
        let bindings: Vec<String> = bindings
            .iter()
            .filter(|(_, dictionary)| used(dictionary))
            .map(|(key, dictionary)| {
                format!("\"{key}\" = {{ dictionary = \"{dictionary}\", probability = 0.7 }}")
            })
            .collect();
        if !bindings.is_empty() {
            out.push_str(&format!(
                "\n[[operations]]\ninclude-path-regex = \"{regex}\"\nparameters = {{ {} }}\n",
                bindings.join(", ")
            ));
        }
    }
    out
}

/// One schemathesis run as `role` (a bearer token, or none); its exit status and report.
fn run(
    program: &Path,
    base: &str,
    config: &Path,
    workdir: &Path,
    role: &str,
    token: Option<&str>,
) -> (bool, String, Duration) {
    let mut cmd = Command::new(program);
    cmd.current_dir(workdir)
        .arg("--config-file")
        .arg(config)
        .args([
            "run",
            &format!("{base}/api/v1/openapi.json"),
            "--checks",
            CHECKS,
            "--max-examples",
            &MAX_EXAMPLES.to_string(),
            "--seed",
            "20260401",
            "--workers",
            "1",
            "--generation-database",
            "none",
            "--request-timeout",
            "30",
            "--no-color",
        ])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(token) = token {
        cmd.args(["--header", &format!("Authorization: Bearer {token}")]);
        // Logging out would end the session the rest of the run uses; the anonymous run
        // still calls it (401).
        cmd.args(["--exclude-path", "/api/v1/sessions/current"]);
    }
    let started = Instant::now();
    let mut child = cmd.spawn().expect("starting schemathesis");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for schemathesis") {
            break Some(status);
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let report = format!(
        "{}{}",
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default()
    );
    let elapsed = started.elapsed();
    match status {
        Some(status) => (status.success(), report, elapsed),
        None => (
            false,
            format!("{report}\n[{role}: stopped after {RUN_LIMIT:?}]"),
            elapsed,
        ),
    }
}

#[test]
fn every_role_gets_documented_answers_and_no_server_error() {
    let program = schemathesis();
    let dir = tempfile::tempdir().expect("temporary directory");
    let demo = Demo::start(&dir.path().join("ekey-data"));
    let portal = Portal::new(&demo.base);
    let rt = tokio::runtime::Runtime::new().expect("runtime");

    // Every session first: the anonymous run's failed logins make the login limit refuse
    // this address for a while.
    let roles = [
        "demo@ekey.example",
        "agency-320000",
        // Another province: the Jiangsu requests are not its own.
        "agency-110000",
        "provider",
        // Last of the roles: it may disable other staff accounts (never its own), which
        // ends their sessions.
        "admin",
    ];
    let tokens: Vec<(&str, String)> = roles
        .iter()
        .map(|role| {
            let token = rt
                .block_on(portal.login(role))
                .unwrap_or_else(|e| panic!("logging in {role}: {e:#}"));
            (*role, token)
        })
        .collect();
    let admin = &tokens[roles.len() - 1].1;
    let seeded = rt.block_on(seed(&portal, admin));
    let config_path = dir.path().join("schemathesis.toml");
    let config = config(&seeded);
    // Shown with a failure, to replay it (`st replay` needs the same server state, though).
    eprintln!("schemathesis.toml:\n{config}");
    std::fs::write(&config_path, config).expect("writing the configuration");
    let workdir = dir.path().join("work");
    std::fs::create_dir_all(&workdir).expect("work directory");

    let started = Instant::now();
    let mut failures = Vec::new();
    let runs = tokens
        .iter()
        .map(|(role, token)| (*role, Some(token.as_str())))
        .chain([("anonymous", None)]);
    for (role, token) in runs {
        let (ok, report, took) = run(&program, &demo.base, &config_path, &workdir, role, token);
        let summary = report
            .lines()
            .rev()
            .find(|l| l.contains(" in ") && l.starts_with('='))
            .unwrap_or("(no summary)")
            .to_string();
        eprintln!("schemathesis as {role}: {took:.1?} {summary}");
        if !ok {
            failures.push(format!(
                "==================== schemathesis as {role} ====================\n{report}"
            ));
        }
    }
    eprintln!("all runs: {:.1?}", started.elapsed());
    assert!(
        failures.is_empty(),
        "schemathesis found problems:\n{}",
        failures.join("\n")
    );
}
