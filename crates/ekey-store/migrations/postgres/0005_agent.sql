-- eKey schema v5 (postgres): certificate login through the local agent, and renewals.
-- One-time login challenges (5 minutes, single use), bound to the browser that asked
-- (SHA-256 of its anonymous seed cookie; empty for API clients such as the agent).
CREATE TABLE key_login_challenges (
    id         TEXT PRIMARY KEY,
    challenge  TEXT NOT NULL,
    seed_hash  TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);

-- A session opened with a key remembers the key (a renewal needs the key being renewed).
ALTER TABLE sessions ADD COLUMN key_id TEXT;

-- One renewal record per approved renewal request: which key, its old certificate, the one
-- new certificate issued for it (once), and whether the token confirmed it is installed.
CREATE TABLE renewals (
    request_id     TEXT PRIMARY KEY REFERENCES requests(id),
    key_id         TEXT NOT NULL REFERENCES keys(id),
    old_serial     TEXT NOT NULL,
    new_serial     TEXT,
    state          TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    issued_at      BIGINT,
    confirmed_at   BIGINT,
    old_revoked_at BIGINT
);
CREATE INDEX renewals_key ON renewals (key_id);
CREATE INDEX renewals_new_serial ON renewals (new_serial);
CREATE INDEX renewals_expiry ON renewals (state, expires_at);
CREATE INDEX keys_certificate ON keys (certificate_serial);
