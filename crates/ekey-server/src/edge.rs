//! What every request and every answer goes through, whatever route serves it: the input
//! checks no handler should have to repeat (bytes that are not text, bodies larger than any
//! route takes) and the headers that depend on how the instance is served (https).

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, current_lang};
use crate::state::AppState;

/// The largest body any route takes (a scan upload); a request announcing more is refused
/// before a byte of it is read. Each route's own, smaller limit is applied as it reads.
pub const MAX_BODY: u64 = 8 * 1024 * 1024;

/// What is wrong with the bytes of a query, path or form.
#[derive(Debug, PartialEq, Eq)]
pub enum BadText {
    /// A NUL character (never typed by a person; PostgreSQL cannot store it).
    Nul,
    /// Percent escapes that do not decode to UTF-8 text.
    Encoding,
}

impl BadText {
    /// The refusal: 400 with a stable code.
    pub fn error(&self) -> ApiError {
        match self {
            BadText::Nul => ApiError::new(
                StatusCode::BAD_REQUEST,
                "ekey.input.nul",
                "提交的内容含有不允许的空字符（NUL），请删除后重试",
                "The input contains a NUL character, which is not allowed",
            ),
            BadText::Encoding => ApiError::new(
                StatusCode::BAD_REQUEST,
                "ekey.input.malformed",
                "网址或提交的内容不是有效的文字（UTF-8 编码），请检查后重试",
                "The address or the input is not valid text (UTF-8)",
            ),
        }
    }
}

/// Checks URL-encoded text (a query string, a path, a form body) as it will be read: `+`
/// and `%XX` decoded, the result must be UTF-8 without NUL.
pub fn check_urlencoded(raw: &[u8]) -> Result<(), BadText> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        match raw[i] {
            b'%' => {
                match (
                    raw.get(i + 1).and_then(|&c| hex(c)),
                    raw.get(i + 2).and_then(|&c| hex(c)),
                ) {
                    (Some(h), Some(l)) => {
                        out.push(h * 16 + l);
                        i += 3;
                    }
                    _ => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    if out.contains(&0) {
        return Err(BadText::Nul);
    }
    std::str::from_utf8(&out).map_err(|_| BadText::Encoding)?;
    Ok(())
}

/// A refusal in the form the caller reads: JSON for the API, a page for everything else.
fn refuse(api: bool, e: ApiError) -> Response {
    if api {
        e.into_response()
    } else {
        crate::web::error_page(current_lang(), e)
    }
}

/// Inbound checks, inside the language layer (refusals in the caller's language): a body
/// announced larger than any route takes (413), a path or query that is not UTF-8 text or
/// holds a NUL (400, on every route: pages, API and files alike). OCSP's GET form carries
/// base64 in its path and is left to its own parser.
pub async fn check_input(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let api = path.starts_with("/api/");
    // A scan upload names its own limit (1 MB, 200 KB …) in its refusal; its route reads at
    // most MAX_BODY too, checking `Content-Length` first, so it is left to say so itself.
    let upload = req.method() == axum::http::Method::PUT
        && path.starts_with("/api/v1/requests/")
        && path.contains("/materials/");
    let too_large = !upload
        && req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|n| n > MAX_BODY);
    if too_large {
        return refuse(
            api,
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "ekey.input.too_large",
                "提交的数据过大",
                "The request body is too large",
            ),
        );
    }
    if !path.starts_with("/ocsp/") {
        let checked = check_urlencoded(path.as_bytes())
            .and_then(|()| check_urlencoded(req.uri().query().unwrap_or_default().as_bytes()));
        if let Err(bad) = checked {
            return refuse(api, bad.error());
        }
    }
    next.run(req).await
}

/// The cookies eKey sets. Served over https they carry the `__Host-` prefix (the browser
/// then accepts them only with `Secure`, `Path=/` and no `Domain`, so a neighbouring host
/// or a plain-http answer cannot plant one); the handlers always use the plain names.
const OUR_COOKIES: [&str; 3] = [
    crate::auth::SESSION_COOKIE,
    crate::web::SEED_COOKIE,
    crate::web::LANG_COOKIE,
];

/// The prefix of our cookies' names on the wire when served over https.
pub const HOST_PREFIX: &str = "__Host-";

/// The name a browser stores one of our cookies under on an instance with this public URL.
pub fn cookie_name(state: &AppState, name: &str) -> String {
    if https(state) {
        format!("{HOST_PREFIX}{name}")
    } else {
        name.to_string()
    }
}

fn https(state: &AppState) -> bool {
    state.config.public_url().starts_with("https://")
}

/// Over https: the `Cookie` header as the handlers read it (our `__Host-` cookies under
/// their plain names; a plain-named one of ours, which anyone could have planted, dropped).
fn inbound_cookies(value: &str) -> String {
    value
        .split(';')
        .map(str::trim)
        .filter_map(|pair| {
            let name = pair.split('=').next().unwrap_or_default();
            match name.strip_prefix(HOST_PREFIX) {
                Some(plain) if OUR_COOKIES.contains(&plain) => {
                    Some(pair[HOST_PREFIX.len()..].to_string())
                }
                _ if OUR_COOKIES.contains(&name) => None,
                _ => Some(pair.to_string()),
            }
        })
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Over https: a `Set-Cookie` of ours under its `__Host-` name, always `Secure` (a
/// clearing cookie too, or the browser would ignore it).
fn outbound_cookie(value: &str) -> Option<String> {
    let name = value.split('=').next().unwrap_or_default();
    if !OUR_COOKIES.contains(&name) {
        return None;
    }
    let mut out = format!("{HOST_PREFIX}{value}");
    if !value
        .split(';')
        .any(|a| a.trim().eq_ignore_ascii_case("secure"))
    {
        out.push_str("; Secure");
    }
    Some(out)
}

/// The outermost layer: cookie names over https (both ways), and the headers that depend
/// on the whole answer — HSTS over https, `Cache-Control: no-store` on every API answer
/// that does not set its own (they carry personal data, sessions, initial PINs), and
/// `Retry-After` on every 503.
pub async fn cookies_and_headers(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let https = https(&state);
    if https {
        let joined: Vec<String> = req
            .headers()
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(inbound_cookies)
            .filter(|v| !v.is_empty())
            .collect();
        let headers = req.headers_mut();
        headers.remove(header::COOKIE);
        if !joined.is_empty()
            && let Ok(v) = HeaderValue::from_str(&joined.join("; "))
        {
            headers.insert(header::COOKIE, v);
        }
    }
    let api = req.uri().path().starts_with("/api/");
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    if https {
        let set: Vec<HeaderValue> = h.get_all(header::SET_COOKIE).iter().cloned().collect();
        h.remove(header::SET_COOKIE);
        for v in set {
            let renamed = v
                .to_str()
                .ok()
                .and_then(outbound_cookie)
                .and_then(|s| HeaderValue::from_str(&s).ok());
            h.append(header::SET_COOKIE, renamed.unwrap_or(v));
        }
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    if api && !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if res.status() == StatusCode::SERVICE_UNAVAILABLE {
        res.headers_mut()
            .entry(header::RETRY_AFTER)
            .or_insert(HeaderValue::from_static("5"));
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urlencoded_text_is_checked_as_it_will_be_read() {
        assert_eq!(check_urlencoded(b"a=1&b=%E4%B8%AD+x"), Ok(()));
        assert_eq!(check_urlencoded(b"100%"), Ok(()), "a stray % is a %");
        assert_eq!(check_urlencoded(b"a=%zz"), Ok(()));
        assert_eq!(check_urlencoded(b"a=%00"), Err(BadText::Nul));
        assert_eq!(check_urlencoded(b"a=\0"), Err(BadText::Nul));
        assert_eq!(check_urlencoded(b"a=%FF"), Err(BadText::Encoding));
        assert_eq!(check_urlencoded(b"a=%E4%B8"), Err(BadText::Encoding));
        assert_eq!(
            check_urlencoded(b"/portal/requests/%C0%AF"),
            Err(BadText::Encoding)
        );
    }

    #[test]
    fn cookies_carry_the_host_prefix_on_the_wire_only() {
        assert_eq!(
            inbound_cookies("__Host-ekey_session=abc; ekey_session=planted; other=1"),
            "ekey_session=abc; other=1"
        );
        assert_eq!(inbound_cookies("ekey_seed=planted"), "");
        assert_eq!(
            outbound_cookie("ekey_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax").unwrap(),
            "__Host-ekey_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax; Secure"
        );
        assert_eq!(
            outbound_cookie("ekey_lang=en; Path=/; Secure").unwrap(),
            "__Host-ekey_lang=en; Path=/; Secure"
        );
        assert_eq!(outbound_cookie("foreign=1"), None);
    }
}
