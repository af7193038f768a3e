//! The paths every key test needs first, driven over HTTP like a user would: an active
//! key in the hands of the demo enterprise (first issue → 验核 → 复核 → production →
//! shipment → arrival → notice → handover), and approved renewal and unlock requests for
//! it. Used by the server's API suite and by the CLI's process-level fault tests, so
//! both start from the same state.

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

/// The demo password of every demo account.
pub const DEMO_PASSWORD: &str = "ekey-demo-2026";

/// Items of the first-issue checklist.
pub const SIX: &[&str] = &[
    "application_form",
    "business_licence",
    "confirmation_letter",
    "id_card",
    "power_of_attorney",
    "user_agreement",
];

/// Items of the renewal checklist (① ② ③ ⑥).
pub const RENEWAL_ITEMS: &[&str] = &[
    "application_form",
    "business_licence",
    "confirmation_letter",
    "user_agreement",
];

/// A JSON client of one eKey server, or of several instances called in turn.
#[derive(Clone, Debug)]
pub struct Portal {
    /// Base URL, e.g. `http://127.0.0.1:8080` (the first instance's).
    pub base: String,
    bases: Vec<String>,
    next: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    client: reqwest::Client,
}

impl Portal {
    /// A client of the server at `base`.
    pub fn new(base: &str) -> Portal {
        Portal::round_robin(&[base])
    }

    /// A client that sends each call to the next of `bases` in turn (a round-robin load
    /// balancer in front of several instances).
    pub fn round_robin(bases: &[&str]) -> Portal {
        let bases: Vec<String> = bases
            .iter()
            .map(|b| b.trim_end_matches('/').to_string())
            .collect();
        Portal {
            base: bases.first().cloned().unwrap_or_default(),
            bases,
            next: Default::default(),
            client: reqwest::Client::new(),
        }
    }

    /// The base URL the next call goes to.
    pub fn next_base(&self) -> &str {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        &self.bases[i % self.bases.len()]
    }

    /// One call; the status and the JSON answer (`null` when there is none).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<(u16, Value)> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut b = self
            .client
            .request(method, format!("{}{path}", self.next_base()));
        if let Some(t) = token {
            b = b.bearer_auth(t);
        }
        if let Some(body) = body {
            b = b.json(&body);
        }
        let res = b.send().await.with_context(|| format!("calling {path}"))?;
        let status = res.status().as_u16();
        let text = res.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// A call that must answer `want`; its JSON.
    pub async fn expect(
        &self,
        want: u16,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<Value> {
        let (status, v) = self.call(method, path, token, body).await?;
        ensure!(
            status == want,
            "{method} {path}: {status} (wanted {want}): {v}"
        );
        Ok(v)
    }

    /// Logs a demo account in; its bearer token.
    pub async fn login(&self, login: &str) -> Result<String> {
        let v = self
            .expect(
                200,
                "POST",
                "/api/v1/sessions",
                None,
                Some(json!({"login": login, "password": DEMO_PASSWORD})),
            )
            .await?;
        Ok(v["token"].as_str().context("token")?.to_string())
    }

    /// Uploads a small PNG for every item.
    pub async fn upload_all(&self, token: &str, id: &str, items: &[&str]) -> Result<()> {
        for item in items {
            let res = self
                .client
                .put(format!(
                    "{}/api/v1/requests/{id}/materials/{item}",
                    self.next_base()
                ))
                .bearer_auth(token)
                .header("content-type", "image/png")
                .body(png(2000))
                .send()
                .await?;
            ensure!(
                res.status().as_u16() == 201,
                "upload {item}: {} {}",
                res.status(),
                res.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }

    /// Creates a request with `body`, submits it, uploads `items` and confirms; its id.
    pub async fn request_under_review(
        &self,
        token: &str,
        body: Value,
        items: &[&str],
    ) -> Result<String> {
        let v = self
            .expect(201, "POST", "/api/v1/requests", Some(token), Some(body))
            .await?;
        let id = v["id"].as_str().context("id")?.to_string();
        self.expect(
            200,
            "POST",
            &format!("/api/v1/requests/{id}/submit"),
            Some(token),
            Some(json!({})),
        )
        .await?;
        self.upload_all(token, &id, items).await?;
        self.expect(
            200,
            "POST",
            &format!("/api/v1/requests/{id}/confirm-upload"),
            Some(token),
            Some(json!({})),
        )
        .await?;
        Ok(id)
    }

    /// An approval of the current stage by `token`.
    pub async fn approve(&self, token: &str, id: &str) -> Result<Value> {
        self.expect(
            200,
            "POST",
            &format!("/api/v1/requests/{id}/decision"),
            Some(token),
            Some(json!({"approve": true})),
        )
        .await
    }
}

/// The authorised user of the demo enterprise.
pub fn person(email: &str) -> Value {
    json!({"name": "李明", "id_number": "11010519491231002X", "mobile": "13912345678", "email": email})
}

/// A key handed over to the demo enterprise and in use.
#[derive(Clone, Debug)]
pub struct ActiveKey {
    /// The key's id.
    pub key_id: String,
    /// Its login name.
    pub login_name: String,
    /// Token serial (the software token is `<data_dir>/tokens/<serial>.token`).
    pub token_serial: String,
    /// The initial PIN, as the enterprise reads it.
    pub pin: String,
    /// Serial of its certificate (lower-case hex).
    pub certificate_serial: String,
    /// The first-issue request that made it.
    pub request_id: String,
}

/// Runs the whole first-issue path for the demo enterprise (Jiangsu) up to the handover:
/// the enterprise ends with one more active key.
pub async fn active_key(p: &Portal) -> Result<ActiveKey> {
    let ent = p.login("demo@ekey.example").await?;
    let agency = p.login("agency-320000").await?;
    let provider = p.login("provider").await?;
    let id = p
        .request_under_review(
            &ent,
            json!({"kind": "first", "licence_types": ["import_licence"],
                   "login_name": {"mode": "allocate"}, "authorised_user": person("liming@example.com")}),
            SIX,
        )
        .await?;
    p.approve(&agency, &id).await?;
    p.approve(&provider, &id).await?;
    p.expect(
        200,
        "POST",
        &format!("/api/v1/requests/{id}/produce"),
        Some(&provider),
        Some(json!({})),
    )
    .await?;
    let shipment = p
        .expect(
            201,
            "POST",
            "/api/v1/shipments",
            Some(&provider),
            Some(
                json!({"courier": "EMS", "tracking_number": "EM123456789CN", "request_ids": [id]}),
            ),
        )
        .await?;
    let shipment = shipment["id"].as_str().context("shipment id")?;
    for step in ["receive", "notify"] {
        p.expect(
            200,
            "POST",
            &format!("/api/v1/shipments/{shipment}/{step}"),
            Some(&agency),
            Some(json!({})),
        )
        .await?;
    }
    p.expect(
        200,
        "POST",
        &format!("/api/v1/requests/{id}/handover"),
        Some(&agency),
        Some(json!({"method": "pickup", "collector_name": "李明",
                    "collector_id_number": "11010519491231002X", "introduction_letter": true})),
    )
    .await?;
    let keys = p
        .expect(200, "GET", "/api/v1/keys", Some(&ent), None)
        .await?;
    let key = keys
        .as_array()
        .and_then(|ks| ks.iter().find(|k| k["request_id"] == id.as_str()))
        .context("the new key is listed")?
        .clone();
    if key["state"] != "active" {
        bail!("key not active after the handover: {key}");
    }
    let key_id = key["id"].as_str().context("key id")?.to_string();
    let pin = p
        .expect(
            200,
            "GET",
            &format!("/api/v1/keys/{key_id}/initial-pin"),
            Some(&ent),
            None,
        )
        .await?;
    Ok(ActiveKey {
        key_id,
        login_name: key["login_name"].as_str().context("login name")?.into(),
        token_serial: key["token_serial"].as_str().context("token serial")?.into(),
        pin: pin["initial_pin"].as_str().context("pin")?.into(),
        certificate_serial: key["certificate_serial"]
            .as_str()
            .context("certificate serial")?
            .into(),
        request_id: id,
    })
}

/// A renewal request for `key`, approved by the provider; its id and number.
pub async fn approved_renewal(p: &Portal, key: &ActiveKey) -> Result<(String, String)> {
    let ent = p.login("demo@ekey.example").await?;
    let provider = p.login("provider").await?;
    let id = p
        .request_under_review(
            &ent,
            json!({"kind": "renewal", "licence_types": ["import_licence"],
                   "login_name": {"mode": "original", "value": key.login_name},
                   "authorised_user": person("liming@example.com")}),
            RENEWAL_ITEMS,
        )
        .await?;
    let v = p.approve(&provider, &id).await?;
    ensure!(v["status"] == "approved", "renewal not approved: {v}");
    Ok((id, v["number"].as_str().context("number")?.into()))
}

/// A minimal valid PNG (1×1) of exactly `size` bytes (≥ 79; padded with a private chunk).
pub fn png(size: usize) -> Vec<u8> {
    fn chunk(t: &[u8], d: &[u8]) -> Vec<u8> {
        let mut out = (d.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(t);
        out.extend_from_slice(d);
        let mut crc_in = t.to_vec();
        crc_in.extend_from_slice(d);
        out.extend_from_slice(&crc32(&crc_in).to_be_bytes());
        out
    }
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    v.extend(chunk(b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0]));
    // What follows the padding: its own chunk overhead, IDAT (12 + 10) and IEND (12).
    let fixed = v.len() + 12 + 22 + 12;
    let pad = size.saturating_sub(fixed);
    v.extend(chunk(b"prVt", &vec![b'a'; pad]));
    v.extend(chunk(
        b"IDAT",
        &[0x78, 0x9c, 0x63, 0x60, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01],
    ));
    v.extend(chunk(b"IEND", &[]));
    v
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
