-- eKey schema v4 (sqlite): what the enterprise portal needs.
-- Password reset links (single use, expiring; only the SHA-256 of the token is kept).
CREATE TABLE password_resets (
    token_hash TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
);
CREATE INDEX password_resets_account ON password_resets (account_id);

-- A reviewer's remark may name what it concerns (materials or form fields), comma-separated,
-- so the enterprise sees it next to the item to fix.
ALTER TABLE request_history ADD COLUMN concerns TEXT NOT NULL DEFAULT '';

-- How the enterprise wants to receive its key: at the agency's window or by free mailing
-- (with the disclaimer's recipient, address, mobile and ID number).
CREATE TABLE collection_choices (
    request_id TEXT PRIMARY KEY REFERENCES requests(id),
    method     TEXT NOT NULL,
    recipient  TEXT NOT NULL DEFAULT '',
    address    TEXT NOT NULL DEFAULT '',
    mobile     TEXT NOT NULL DEFAULT '',
    id_number  TEXT NOT NULL DEFAULT '',
    chosen_at  INTEGER NOT NULL,
    chosen_by  TEXT NOT NULL
);
