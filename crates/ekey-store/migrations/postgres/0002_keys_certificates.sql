-- eKey schema v2 (PostgreSQL): keys as produced and delivered, certificates, shipments, handovers.
ALTER TABLE keys ADD COLUMN request_id TEXT;
ALTER TABLE keys ADD COLUMN token_kind TEXT NOT NULL DEFAULT 'soft';
ALTER TABLE keys ADD COLUMN certificate_serial TEXT;
ALTER TABLE keys ADD COLUMN shipment_id TEXT;
ALTER TABLE keys ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
CREATE INDEX keys_login_name ON keys(login_name);
CREATE UNIQUE INDEX keys_request ON keys(request_id);

-- One row per certificate. A row is reserved (der NULL) before the CA signs, so a crash
-- between signing and storing re-signs the same serial for the same order instead of
-- issuing a second certificate: idempotency_key is the production order.
CREATE TABLE certificates (
    serial            TEXT PRIMARY KEY,
    idempotency_key   TEXT NOT NULL UNIQUE,
    enterprise_id     TEXT,
    key_id            TEXT,
    subject           TEXT NOT NULL,
    der               BYTEA,
    not_before        BIGINT,
    not_after         BIGINT,
    issued_at         BIGINT NOT NULL,
    revoked_at        BIGINT,
    revocation_reason TEXT
);
CREATE INDEX certificates_revoked ON certificates(revoked_at);
CREATE INDEX certificates_enterprise ON certificates(enterprise_id);

-- CRL number and a revocation counter that changes with every revocation (instances compare
-- it to know their cached CRL and OCSP answers are stale).
CREATE TABLE ca_state (
    id          BIGINT PRIMARY KEY,
    crl_number  BIGINT NOT NULL,
    revocations BIGINT NOT NULL
);
INSERT INTO ca_state (id, crl_number, revocations) VALUES (1, 0, 0);

CREATE TABLE shipments (
    id              TEXT PRIMARY KEY,
    number          TEXT NOT NULL UNIQUE,
    province        TEXT NOT NULL,
    courier         TEXT NOT NULL,
    tracking_number TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    created_by      TEXT NOT NULL,
    received_at     BIGINT,
    received_by     TEXT
);
CREATE INDEX shipments_province ON shipments(province, received_at);

CREATE TABLE handovers (
    request_id TEXT PRIMARY KEY REFERENCES requests(id),
    method     TEXT NOT NULL,
    record     TEXT NOT NULL,
    at         BIGINT NOT NULL,
    by_account TEXT NOT NULL
);
