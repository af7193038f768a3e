-- eKey schema v1 (SQLite). Times are integer milliseconds since the epoch, UTC.
CREATE TABLE agencies (
    province    TEXT PRIMARY KEY,
    name_zh     TEXT NOT NULL,
    name_en     TEXT NOT NULL,
    address     TEXT NOT NULL,
    window_name TEXT NOT NULL,
    hours       TEXT NOT NULL,
    hotline     TEXT NOT NULL
);

CREATE TABLE enterprises (
    id                   TEXT PRIMARY KEY,
    name                 TEXT NOT NULL,
    credit_code          TEXT NOT NULL UNIQUE,
    province             TEXT NOT NULL REFERENCES agencies(province),
    address              TEXT NOT NULL,
    legal_representative TEXT NOT NULL,
    version              INTEGER NOT NULL DEFAULT 0,
    created_at           INTEGER NOT NULL
);

CREATE TABLE accounts (
    id            TEXT PRIMARY KEY,
    login         TEXT NOT NULL UNIQUE,
    email         TEXT NOT NULL,
    display_name  TEXT NOT NULL,
    mobile        TEXT,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL,
    enterprise_id TEXT REFERENCES enterprises(id),
    province      TEXT,
    active        INTEGER NOT NULL,
    created_at    INTEGER NOT NULL
);
CREATE INDEX accounts_enterprise ON accounts(enterprise_id);

CREATE TABLE activation_tokens (
    token_hash TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
);
CREATE INDEX activation_tokens_account ON activation_tokens(account_id);

CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
);

CREATE TABLE login_names (
    name          TEXT PRIMARY KEY,
    enterprise_id TEXT NOT NULL REFERENCES enterprises(id),
    source        TEXT NOT NULL,
    request_id    TEXT,
    created_at    INTEGER NOT NULL
);
CREATE INDEX login_names_enterprise ON login_names(enterprise_id);

CREATE TABLE keys (
    id            TEXT PRIMARY KEY,
    enterprise_id TEXT NOT NULL REFERENCES enterprises(id),
    login_name    TEXT NOT NULL,
    serial        TEXT UNIQUE,
    status        TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX keys_enterprise ON keys(enterprise_id);

CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);

CREATE TABLE requests (
    id            TEXT PRIMARY KEY,
    number        TEXT NOT NULL UNIQUE,
    kind          TEXT NOT NULL,
    status        TEXT NOT NULL,
    version       INTEGER NOT NULL,
    enterprise_id TEXT NOT NULL REFERENCES enterprises(id),
    province      TEXT NOT NULL,
    login_name    TEXT,
    form          TEXT NOT NULL,
    due_at        INTEGER,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX requests_enterprise ON requests(enterprise_id, created_at);
CREATE INDEX requests_queue ON requests(province, status, due_at);

CREATE TABLE request_history (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id  TEXT NOT NULL REFERENCES requests(id),
    seq         INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    actor_id    TEXT NOT NULL,
    actor_role  TEXT NOT NULL,
    action      TEXT NOT NULL,
    from_status TEXT,
    to_status   TEXT NOT NULL,
    remark      TEXT,
    UNIQUE (request_id, seq)
);

CREATE TABLE materials (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id   TEXT NOT NULL REFERENCES requests(id),
    item         TEXT NOT NULL,
    state        TEXT NOT NULL,
    blob_key     TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size         INTEGER NOT NULL,
    sha256       TEXT NOT NULL,
    file_name    TEXT,
    uploaded_at  INTEGER NOT NULL,
    uploaded_by  TEXT NOT NULL
);
CREATE INDEX materials_request ON materials(request_id, item, state);

CREATE TABLE audit_log (
    seq          INTEGER PRIMARY KEY,
    at           INTEGER NOT NULL,
    actor_id     TEXT NOT NULL,
    actor_role   TEXT NOT NULL,
    address      TEXT NOT NULL,
    action       TEXT NOT NULL,
    object_type  TEXT NOT NULL,
    object_id    TEXT NOT NULL,
    before_state TEXT NOT NULL,
    after_state  TEXT NOT NULL,
    prev_hash    TEXT NOT NULL,
    hash         TEXT NOT NULL
);

-- One row: the end of the chain. Updating it first in a transaction serialises appenders.
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY,
    seq  INTEGER NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    channel      TEXT NOT NULL,
    recipient    TEXT NOT NULL,
    subject      TEXT NOT NULL,
    body         TEXT NOT NULL,
    dedup_key    TEXT NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    available_at INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    status       TEXT NOT NULL DEFAULT 'pending',
    lease_owner  TEXT,
    lease_until  INTEGER,
    sent_at      INTEGER,
    last_error   TEXT
);
CREATE INDEX outbox_due ON outbox(status, available_at);

CREATE TABLE dev_mailbox (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    outbox_id INTEGER NOT NULL UNIQUE,
    channel   TEXT NOT NULL,
    recipient TEXT NOT NULL,
    subject   TEXT NOT NULL,
    body      TEXT NOT NULL,
    sent_at   INTEGER NOT NULL
);
