-- eKey schema v6 (sqlite): what several instances on one database share.

-- Periodic jobs (expiry reminders, the clerks' digest, renewal expiry). An instance runs a
-- job only after claiming its row: a conditional UPDATE that succeeds on one instance at a
-- time (next run due and no live lease), so each run happens once across all instances.
CREATE TABLE timers (
    name        TEXT PRIMARY KEY,
    next_run_at INTEGER NOT NULL,
    lease_owner TEXT,
    lease_until INTEGER,
    runs        INTEGER NOT NULL DEFAULT 0,
    last_run_at INTEGER,
    last_owner  TEXT
);

-- The CRLs published to every instance: whoever regenerates one stores it here, and every
-- instance serves the newest that covers the current revocation counter, so a client never
-- sees the CRL number go backwards when its requests land on different instances.
CREATE TABLE crls (
    number      INTEGER PRIMARY KEY,
    revocations INTEGER NOT NULL,
    made_at     INTEGER NOT NULL,
    der         BLOB NOT NULL
);

-- Holiday years loaded by an administrator: every instance reloads its calendar when this
-- table changes (files under data_dir/holidays are read at start as before).
CREATE TABLE holiday_years (
    year      INTEGER PRIMARY KEY,
    data      TEXT NOT NULL,
    loaded_at INTEGER NOT NULL,
    loaded_by TEXT NOT NULL
);
