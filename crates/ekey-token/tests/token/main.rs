//! Integration tests of the token layer against real peers: OpenSSL for signatures,
//! requests and certificates; SoftHSM2 and OpenSC's pkcs11-tool for PKCS#11.
//! One binary; tests that need their own environment re-run this binary as a child.

mod promotion;
mod soft;
mod softhsm;
mod support;
