//! Upload type detection (`PUT …/materials/{item}`): any bytes are judged JPEG, PNG, PDF or
//! refused, never a panic, and the verdict agrees with the file's first bytes.
#![no_main]

use ekey_domain::Lang;
use ekey_domain::upload::{FileKind, check_size, detect, human_size};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match detect(data) {
        Ok(kind) => {
            let magic: &[&[u8]] = match kind {
                FileKind::Jpeg => &[&[0xFF, 0xD8, 0xFF]],
                FileKind::Png => &[b"\x89PNG\r\n\x1a\n"],
                FileKind::Pdf => &[b"%PDF-1.", b"%PDF-2."],
            };
            assert!(magic.iter().any(|m| data.starts_with(m)), "{kind:?}");
            let len = data.len() as u64;
            assert!(check_size(kind, len, len).is_ok());
            let e = check_size(kind, len, len - 1).unwrap_err();
            assert!(!e.message(Lang::Zh).is_empty() && !e.message(Lang::En).is_empty());
        }
        Err(e) => {
            assert!(e.code().starts_with("ekey.material."));
            assert_ne!(e.message(Lang::Zh), e.message(Lang::En));
        }
    }
    // Sizes in messages: any 8 bytes as a byte count.
    if let Some(first) = data.first_chunk::<8>() {
        let n = u64::from_le_bytes(*first);
        assert!(!human_size(n, Lang::Zh).is_empty());
        let _ = check_size(FileKind::Png, n, n / 2 + 1).map_err(|e| e.message(Lang::En));
    }
});
