//! The error answers every operation shares because they come from the shared extractors
//! and middleware, added to the OpenAPI document once rather than repeated in each handler's annotation
//! (which lists only the handler's own answers; an answer it documents is kept as it is).

use utoipa::openapi::path::Operation;
use utoipa::openapi::{Content, OpenApi, Ref, RefOr, ResponseBuilder};

/// Adds to every operation of `doc`:
/// - 401 and 403 where a bearer token is required: [`Auth`](crate::auth::Auth) refuses a
///   missing, unknown or expired session, and a cookie session's write without its CSRF
///   token (403 on reads is each handler's own role check, documented there);
/// - 400 everywhere: a NUL character in the URL (and in a JSON body) is refused for the whole
///   API, and where there are parameters or a JSON body, what does not parse is refused
///   ([`super::ApiQuery`], [`super::ApiJson`], and the framework's path and body refusals
///   turned into our errors);
/// - 413 where there is a body (the body limit), and 415 where it is JSON ([`super::ApiJson`]
///   refuses another `Content-Type`).
pub(super) fn document(doc: &mut OpenApi) {
    for item in doc.paths.paths.values_mut() {
        let operations = [
            (&mut item.get, false),
            (&mut item.head, false),
            (&mut item.post, true),
            (&mut item.put, true),
            (&mut item.patch, true),
            (&mut item.delete, true),
        ];
        for (operation, writes) in operations {
            if let Some(operation) = operation.as_mut() {
                add(operation, writes);
            }
        }
    }
}

fn add(op: &mut Operation, writes: bool) {
    let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
    let (has_body, json_body) = match &op.request_body {
        Some(RefOr::T(body)) => (true, body.content.contains_key("application/json")),
        Some(RefOr::Ref(_)) => (true, true),
        None => (false, false),
    };
    let mut wanted: Vec<(&str, &str)> = vec![(
        "400",
        "malformed input: a parameter or the JSON body does not parse, or holds a NUL character",
    )];
    if secured {
        wanted.push((
            "401",
            "no valid session (missing, unknown or expired token)",
        ));
        if writes {
            wanted.push((
                "403",
                "not allowed: the role may not do this, or a cookie session's write lacks its CSRF token",
            ));
        }
    }
    if has_body {
        wanted.push(("413", "the request body is too large"));
    }
    if json_body {
        wanted.push(("415", "the body is not sent as application/json"));
    }
    for (status, description) in wanted {
        op.responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| error(description));
    }
}

fn error(description: &str) -> RefOr<utoipa::openapi::Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                Content::new(Some(Ref::from_schema_name("ErrorBody"))),
            )
            .build(),
    )
}
