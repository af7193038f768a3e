-- eKey schema v8 (postgres): every public key the CA has certified, for whom, and whether it was
-- ever revoked as keyCompromise. The CA refuses to certify a key for a second enterprise
-- (another credit code) or a key once compromised. The primary key makes the first
-- enterprise's claim win when two issuances race. Rows for certificates issued before this
-- version are filled in by the store right after this migration.
CREATE TABLE certified_keys (
    spki_sha256    TEXT PRIMARY KEY,
    credit_code    TEXT NOT NULL,
    first_at       BIGINT NOT NULL,
    compromised_at BIGINT
);
