-- eKey schema v10 (sqlite): key-login challenges remember the address that asked for them, so
-- that each address has a bounded number of live challenges; expired ones are deleted when
-- new ones are made.
ALTER TABLE key_login_challenges ADD COLUMN address TEXT NOT NULL DEFAULT '';
CREATE INDEX key_login_challenges_address ON key_login_challenges (address, expires_at);
CREATE INDEX key_login_challenges_expiry ON key_login_challenges (expires_at);
