-- eKey schema v11 (sqlite): mail quotas, registrations that claim nothing until activated,
-- enterprise accounts the administrator can release.

-- One row per quota key ('addr:<ip>', 'to:<email>'): mails asked for in the current window
-- and when that window began. Shared by every instance.
CREATE TABLE mail_quota (
    key          TEXT PRIMARY KEY,
    window_start INTEGER NOT NULL,
    used         INTEGER NOT NULL
);

-- A registration waiting for its activation link. It holds no credit code and no email:
-- several may name the same ones; the first activated becomes the enterprise and its
-- account, the others' links then fail.
CREATE TABLE pending_registrations (
    id                   TEXT PRIMARY KEY,
    token_hash           TEXT NOT NULL UNIQUE,
    enterprise_id        TEXT NOT NULL,
    name                 TEXT NOT NULL,
    credit_code          TEXT NOT NULL,
    province             TEXT NOT NULL,
    address              TEXT NOT NULL,
    legal_representative TEXT NOT NULL,
    email                TEXT NOT NULL,
    display_name         TEXT NOT NULL,
    mobile               TEXT,
    password_hash        TEXT NOT NULL,
    created_at           INTEGER NOT NULL,
    expires_at           INTEGER NOT NULL
);
CREATE INDEX pending_registrations_email ON pending_registrations(email, created_at);
CREATE INDEX pending_registrations_expires ON pending_registrations(expires_at);

-- Released by the administrator: the credit code is set free (kept here for the record).
ALTER TABLE enterprises ADD COLUMN released_at INTEGER;
ALTER TABLE enterprises ADD COLUMN released_credit_code TEXT;
CREATE INDEX mail_quota_window ON mail_quota(window_start);
