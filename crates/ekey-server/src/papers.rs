//! What the papers beyond the request print (issue 16, item 11): the agency's collection
//! desk (for the 单位介绍信 and the 免责声明) and the mailing recipient (the enterprise's
//! choice, or before it chose, the authorised user at the registered address).

use ekey_store::{Agency, CollectionChoice};
use sha2::{Digest, Sha256};

/// The desk and the recipient a document prints.
pub fn desk_and_mailing(
    agency: Option<&Agency>,
    doc: &ekey_docs::RequestDoc,
    choice: Option<&CollectionChoice>,
) -> (ekey_docs::Desk, ekey_docs::Mailing) {
    let desk = agency
        .map(|a| ekey_docs::Desk {
            address: a.address.clone(),
            window: a.window.clone(),
            hotline: a.hotline.clone(),
        })
        .unwrap_or_default();
    let mailing = match choice.filter(|c| c.method == "mail") {
        Some(c) => ekey_docs::Mailing {
            recipient: c.recipient.clone(),
            id_number: c.id_number.clone(),
            mobile: c.mobile.clone(),
            address: c.address.clone(),
        },
        None => ekey_docs::Mailing {
            recipient: doc.authorised_user.name.clone(),
            id_number: doc.authorised_user.id_number.clone(),
            mobile: doc.authorised_user.mobile.clone(),
            address: doc.address.clone(),
        },
    };
    (desk, mailing)
}

/// A document's stem with a fingerprint of what it prints beyond the request (`extra`), so
/// that a changed agreement, desk or recipient makes a new document.
pub fn stem(stem: &str, extra: Option<&str>) -> String {
    match extra {
        None => stem.to_string(),
        Some(e) => format!("{stem}-{}", hex::encode(&Sha256::digest(e.as_bytes())[..6])),
    }
}
