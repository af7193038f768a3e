//! PKCS#10 requests as uploaded by a provider or a renewing key (`POST /api/v1/certificates`,
//! the renewal CSR): any bytes, PEM or DER, give a `Csr` or an error, never a panic.
#![no_main]

use ekey_ca::{KeyAlgorithm, MAX_CSR_LEN, parse_csr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(csr) = parse_csr(data) else {
        return;
    };
    assert!(data.len() <= MAX_CSR_LEN);
    assert!(!csr.spki_der.is_empty());
    match csr.algorithm {
        KeyAlgorithm::EcdsaP256 => assert_eq!(csr.key_bits, 256),
        KeyAlgorithm::Rsa2048 => assert!((2048..=8192).contains(&csr.key_bits)),
    }
    // The subject check reads the attributes whatever their string type.
    let cn = csr.subject_cn.clone().unwrap_or_default();
    let sn = csr.subject_serial_number.clone().unwrap_or_default();
    assert!(csr.check_subject(&cn, &sn).is_ok());
    let _ = csr.check_subject("某某进出口有限公司", "91310000MA1FL5LX4N");
});
