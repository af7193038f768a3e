//! The CA engine checked by real clients: OpenSSL 3 and pkilint. One test binary.

mod bad_input;
mod crl;
mod hsm;
mod issue;
mod keys;
mod ocsp;
mod support;
