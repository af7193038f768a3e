-- eKey schema v12 (sqlite): a damaged key handed back after its 补办, recorded once when
-- it reaches the agency or the provider.
CREATE TABLE key_returns (
    key_id      TEXT PRIMARY KEY REFERENCES keys(id),
    returned_at INTEGER NOT NULL,
    recorded_by TEXT NOT NULL
);
