//! Generated documents (a request's printable forms, a shipment's packing list) are made
//! once and kept in the blob store, then served from there: every instance serves the same
//! bytes, and the copy an enterprise printed can be fetched again later.
//!
//! A document's key names what it prints: a hash of every printed value except the date of
//! making (the date on the form stays the date of the first download). A changed request
//! (another authorised user, the allocated login name, a renamed enterprise…) gets a new key,
//! hence a new document; an unchanged one keeps its document.

use std::future::Future;

use ekey_store::StoreError;
use ekey_store::blob::BlobStore;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::error::ApiResult;

/// Bump to make every document again (e.g. after a layout fix that must reach the copies
/// not yet printed); documents already stored stay under their old keys.
const LAYOUT: &str = "2";

fn fingerprint(printed: serde_json::Value) -> String {
    let text = json!([LAYOUT, printed]).to_string();
    hex::encode(&Sha256::digest(text.as_bytes())[..16])
}

/// Key of a request's document `stem` (`application-form`, …) with these contents.
pub fn request_doc_key(request_id: &str, stem: &str, doc: &ekey_docs::RequestDoc) -> String {
    let p = &doc.authorised_user;
    let printed = json!({
        "number": doc.number,
        "kind": doc.kind.as_str(),
        "enterprise_name": doc.enterprise_name,
        "credit_code": doc.credit_code,
        "address": doc.address,
        "legal_representative": doc.legal_representative,
        "province_name": doc.province_name,
        "agency_name": doc.agency_name,
        "licence_types": doc.licence_types.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
        "login_name": doc.login_name,
        "reason": doc.reason,
        "authorised_user": [p.name, p.id_number, p.mobile, p.email],
        "key_serial": doc.key_serial,
        "key_lost": doc.key_lost,
        "provider_name": doc.provider_name,
    });
    format!(
        "documents/requests/{request_id}/{stem}-{}.pdf",
        fingerprint(printed)
    )
}

/// Key of a shipment's packing list with these contents.
pub fn packing_list_key(shipment_id: &str, list: &ekey_docs::PackingList) -> String {
    let printed = json!({
        "number": list.number,
        "agency_name": list.agency_name,
        "courier": list.courier,
        "tracking_number": list.tracking_number,
        "date": list.date.to_string(),
        "keys": list.keys.iter().map(|k| {
            [&k.request_number, &k.enterprise_name, &k.login_name, &k.token_serial]
        }).collect::<Vec<_>>(),
    });
    format!(
        "documents/shipments/{shipment_id}/packing-list-{}.pdf",
        fingerprint(printed)
    )
}

/// The document stored under `key`; when there is none, `make` makes it and it is stored
/// first. Two instances making it at once store one copy (put if absent) and both serve it.
pub async fn kept(
    blobs: &dyn BlobStore,
    key: &str,
    make: impl Future<Output = ApiResult<Vec<u8>>>,
) -> ApiResult<Vec<u8>> {
    match blobs.get(key).await {
        Ok(bytes) => return Ok(bytes),
        Err(StoreError::NotFound) => {}
        Err(e) => return Err(e.into()),
    }
    let bytes = make.await?;
    if blobs.put_if_absent(key, &bytes).await? {
        Ok(bytes)
    } else {
        // Another instance stored its copy first: serve that one.
        Ok(blobs.get(key).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> ekey_docs::RequestDoc {
        ekey_docs::RequestDoc {
            number: "EK3220260212000001".into(),
            kind: ekey_domain::request::Kind::First,
            enterprise_name: "南京示例进出口有限公司".into(),
            credit_code: "91320100MA1XXXXX9R".into(),
            address: "南京市鼓楼区中山北路 1 号".into(),
            legal_representative: "王建华".into(),
            province_name: "江苏省".into(),
            agency_name: "江苏省商务厅".into(),
            licence_types: vec![ekey_domain::request::LicenceType::ALL[0]],
            login_name: Some("ek32000001".into()),
            reason: None,
            authorised_user: ekey_docs::Person {
                name: "李明".into(),
                id_number: "11010519491231002X".into(),
                mobile: "13912345678".into(),
                email: "liming@example.com".into(),
            },
            key_serial: None,
            key_lost: false,
            date: chrono::NaiveDate::from_ymd_opt(2026, 2, 12).unwrap(),
            provider_name: "国富安".into(),
        }
    }

    #[test]
    fn a_document_key_follows_what_is_printed_but_not_the_date() {
        let base = request_doc_key("r1", "application-form", &doc());
        assert!(base.starts_with("documents/requests/r1/application-form-"));
        assert!(base.ends_with(".pdf"));
        ekey_store::blob::check_key(&base).unwrap();
        // Same contents, another day: the same document.
        let later = ekey_docs::RequestDoc {
            date: chrono::NaiveDate::from_ymd_opt(2026, 3, 1).unwrap(),
            ..doc()
        };
        assert_eq!(request_doc_key("r1", "application-form", &later), base);
        // Anything printed changes it.
        let mut other = doc();
        other.authorised_user.mobile = "13800000000".into();
        assert_ne!(request_doc_key("r1", "application-form", &other), base);
        let other = ekey_docs::RequestDoc {
            login_name: None,
            ..doc()
        };
        assert_ne!(request_doc_key("r1", "application-form", &other), base);
        // Another document or request: another key.
        assert_ne!(request_doc_key("r1", "confirmation-letter", &doc()), base);
        assert_ne!(request_doc_key("r2", "application-form", &doc()), base);
    }
}
