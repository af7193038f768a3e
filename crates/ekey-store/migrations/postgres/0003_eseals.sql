-- eKey schema v3 (PostgreSQL): the e-seal (电子签章) record bound to a key at personalisation.
CREATE TABLE eseals (
    id                 TEXT PRIMARY KEY,
    key_id             TEXT NOT NULL UNIQUE REFERENCES keys(id),
    enterprise_id      TEXT NOT NULL REFERENCES enterprises(id),
    name               TEXT NOT NULL,
    certificate_serial TEXT NOT NULL,
    created_at         BIGINT NOT NULL
);
