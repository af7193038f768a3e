-- eKey schema v7 (sqlite): failed-login accounting shared by every instance.

-- One row per login name ('login:<name>') and per client address ('addr:<ip>'): failures
-- since the last success (or since a quiet day), and when the last one happened. The
-- server derives the back-off from these two numbers, so every instance refuses alike.
CREATE TABLE login_failures (
    key         TEXT PRIMARY KEY,
    failures    INTEGER NOT NULL,
    last_at     INTEGER NOT NULL
);
