use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{CustomExtension, DnType, KeyIdMethod, SerialNumber};

use super::*;
use crate::lint::lint_certificate;

/// Counts signatures, to prove that a certificate failing the lint is never signed.
struct Counting {
    inner: FileKey,
    calls: AtomicUsize,
}

impl CaSigner for Counting {
    fn algorithm(&self) -> KeyAlgorithm {
        self.inner.algorithm()
    }
    fn spki_der(&self) -> &[u8] {
        self.inner.spki_der()
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.sign(message)
    }
}

fn test_config() -> CaConfig {
    CaConfig {
        pbkdf2_iterations: MIN_PBKDF2_ITERATIONS,
        ..CaConfig::default()
    }
}

struct Setup {
    ca: Authority,
    issuing: Arc<Counting>,
    subject: PublicKeyInfo,
    now: DateTime<Utc>,
}

fn setup() -> Setup {
    let now = Utc::now();
    let root = FileKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let issuing = Arc::new(Counting {
        inner: FileKey::generate(KeyAlgorithm::EcdsaP256).unwrap(),
        calls: AtomicUsize::new(0),
    });
    let ocsp = Arc::new(FileKey::generate(KeyAlgorithm::EcdsaP256).unwrap());
    let ca = Authority::build(&test_config(), now, &root, issuing.clone(), ocsp).unwrap();
    let key = FileKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let subject = inspect_spki(key.spki_der()).ok().unwrap();
    Setup {
        ca,
        issuing,
        subject,
        now,
    }
}

impl Setup {
    fn params(&self) -> rcgen::CertificateParams {
        self.ca
            .enterprise_params(
                &self.subject,
                &Serial::random().unwrap(),
                (self.now, self.now + Duration::days(730)),
                "某某公司",
                "某某公司",
                "91310000MA1FL5LX4N",
            )
            .unwrap()
    }

    /// Signs through the lint gate; returns the lint codes (empty when signed).
    fn codes(&self, params: &rcgen::CertificateParams) -> Vec<&'static str> {
        let before = self.issuing.calls.load(Ordering::SeqCst);
        let result = sign_issued(
            params,
            &self.subject,
            self.ca.issuing_der(),
            self.issuing.as_ref(),
            &self.ca.enterprise_lint,
        );
        let signed = self.issuing.calls.load(Ordering::SeqCst) - before;
        match result {
            Ok(der) => {
                assert_eq!(signed, 1);
                assert!(lint_certificate(&der, &self.ca.enterprise_lint).is_empty());
                Vec::new()
            }
            Err(CaError::Lint(findings)) => {
                assert_eq!(signed, 0, "a certificate that fails the lint was signed");
                findings.into_iter().map(|f| f.code).collect()
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }
}

#[test]
fn the_enterprise_profile_passes_the_lint() {
    let s = setup();
    assert_eq!(s.codes(&s.params()), Vec::<&str>::new());
}

#[test]
fn every_rule_stops_the_signature() {
    let s = setup();
    type Mutation = Box<dyn Fn(&mut rcgen::CertificateParams, &Setup)>;
    let cases: Vec<(&str, Mutation)> = vec![
        (
            "serial.zero",
            Box::new(|p, _| p.serial_number = Some(SerialNumber::from_slice(&[0]))),
        ),
        (
            "serial.too_long",
            Box::new(|p, _| p.serial_number = Some(SerialNumber::from_slice(&[0x01; 21]))),
        ),
        (
            "validity.order",
            Box::new(|p, s| {
                p.not_before = crate::certgen::to_offset(s.now + Duration::days(2)).unwrap();
                p.not_after = crate::certgen::to_offset(s.now + Duration::days(1)).unwrap();
            }),
        ),
        (
            "validity.outside_issuer",
            Box::new(|p, s| {
                p.not_after = crate::certgen::to_offset(s.now + Duration::days(5000)).unwrap()
            }),
        ),
        (
            "validity.outside_issuer",
            Box::new(|p, s| {
                p.not_before = crate::certgen::to_offset(s.now - Duration::days(1)).unwrap()
            }),
        ),
        (
            "key_usage.ca_bits_on_end_entity",
            Box::new(|p, _| p.key_usages.push(KeyUsagePurpose::KeyCertSign)),
        ),
        ("key_usage.missing", Box::new(|p, _| p.key_usages.clear())),
        (
            "key_usage.eku_inconsistent",
            Box::new(|p, _| p.key_usages = vec![KeyUsagePurpose::ContentCommitment]),
        ),
        (
            "key_usage.encipherment_on_ec",
            Box::new(|p, _| p.key_usages.push(KeyUsagePurpose::KeyEncipherment)),
        ),
        (
            "subject.empty",
            Box::new(|p, _| p.distinguished_name = rcgen::DistinguishedName::new()),
        ),
        (
            "subject.no_serial_number",
            Box::new(|p, _| {
                p.distinguished_name
                    .remove(DnType::CustomDnType(vec![2, 5, 4, 5]));
            }),
        ),
        (
            "subject.attribute_length",
            Box::new(|p, _| {
                p.distinguished_name
                    .push(DnType::CommonName, "长".repeat(65))
            }),
        ),
        (
            "subject.country_invalid",
            Box::new(|p, _| p.distinguished_name.push(DnType::CountryName, "China")),
        ),
        (
            "extensions.duplicate",
            Box::new(|p, _| {
                p.custom_extensions.push(CustomExtension::from_oid_content(
                    &[2, 5, 29, 15],
                    vec![0x03, 0x02, 0x06, 0xc0],
                ))
            }),
        ),
        (
            "extensions.unknown_critical",
            Box::new(|p, _| {
                let mut ext = CustomExtension::from_oid_content(&[1, 2, 3, 4], vec![0x05, 0x00]);
                ext.set_criticality(true);
                p.custom_extensions.push(ext);
            }),
        ),
        (
            "crl_dp.missing",
            Box::new(|p, _| p.crl_distribution_points.clear()),
        ),
        (
            "aia.ocsp_missing",
            Box::new(|p, _| {
                p.custom_extensions = vec![crate::certgen::aia_extension(None, "http://x/ca.crt")]
            }),
        ),
        (
            "aia.ca_issuers_missing",
            Box::new(|p, _| p.custom_extensions.clear()),
        ),
        (
            "basic_constraints.ca_on_end_entity",
            Box::new(|p, _| p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained)),
        ),
        ("ski.missing", Box::new(|p, _| p.is_ca = IsCa::NoCa)),
        (
            "ski.not_rfc7093",
            Box::new(|p, _| p.key_identifier_method = KeyIdMethod::Sha256),
        ),
        (
            "aki.missing",
            Box::new(|p, _| p.use_authority_key_identifier_extension = false),
        ),
        (
            "eku.any",
            Box::new(|p, _| {
                p.extended_key_usages
                    .push(rcgen::ExtendedKeyUsagePurpose::Any)
            }),
        ),
        (
            "eku.client_auth_missing",
            Box::new(|p, _| {
                p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::EmailProtection]
            }),
        ),
        (
            "ocsp_nocheck.unexpected",
            Box::new(|p, _| {
                p.custom_extensions
                    .push(crate::certgen::ocsp_nocheck_extension())
            }),
        ),
    ];
    for (code, mutate) in cases {
        let mut params = s.params();
        mutate(&mut params, &s);
        let codes = s.codes(&params);
        assert!(codes.contains(&code), "expected {code}, got {codes:?}");
    }
}

#[test]
fn ca_certificates_pass_their_profiles() {
    let s = setup();
    let root_ctx = LintContext::self_signed(KeyAlgorithm::EcdsaP256);
    assert!(lint_certificate(s.ca.root_der(), &root_ctx).is_empty());
    let sub = LintContext::for_issuer(s.ca.root_der(), Profile::SubordinateCa).unwrap();
    assert!(lint_certificate(s.ca.issuing_der(), &sub).is_empty());
    let ocsp = LintContext::for_issuer(s.ca.issuing_der(), Profile::OcspResponder).unwrap();
    assert!(lint_certificate(s.ca.ocsp_der(), &ocsp).is_empty());
    // …and not each other's.
    let wrong = LintContext::for_issuer(s.ca.issuing_der(), Profile::Enterprise).unwrap();
    let codes: Vec<_> = lint_certificate(s.ca.ocsp_der(), &wrong)
        .into_iter()
        .map(|f| f.code)
        .collect();
    assert!(
        codes.contains(&"ocsp_nocheck.unexpected") && codes.contains(&"crl_dp.missing"),
        "{codes:?}"
    );
}

#[test]
fn authority_is_shareable() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Authority>();
}

#[test]
fn a_signer_returning_raw_ecdsa_is_caught() {
    struct Raw(FileKey);
    impl CaSigner for Raw {
        fn algorithm(&self) -> KeyAlgorithm {
            self.0.algorithm()
        }
        fn spki_der(&self) -> &[u8] {
            self.0.spki_der()
        }
        fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
            // A token bug: r‖s instead of DER, and of the wrong message.
            let der = self.0.sign(&[message, b"x"].concat())?;
            Ok(der[der.len() - 64..].to_vec())
        }
    }
    let root = Raw(FileKey::generate(KeyAlgorithm::EcdsaP256).unwrap());
    let issuing = Arc::new(FileKey::generate(KeyAlgorithm::EcdsaP256).unwrap());
    let ocsp = Arc::new(FileKey::generate(KeyAlgorithm::EcdsaP256).unwrap());
    let err = Authority::build(&test_config(), Utc::now(), &root, issuing, ocsp).unwrap_err();
    assert_eq!(err.code(), "ekey.ca.signer");
}
