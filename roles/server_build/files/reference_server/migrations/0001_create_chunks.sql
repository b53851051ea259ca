-- 0001_create_chunks.sql: the reference server's world schema (see docs/contracts.md).
-- Format: docs/database-toolkit.md. Applied by mmo_voxel.ops.sqlite_migrate / scripts/voxeldb.
-- migrate:up
CREATE TABLE chunks (
    cx INTEGER NOT NULL,
    cy INTEGER NOT NULL,
    cz INTEGER NOT NULL,
    payload BLOB NOT NULL,
    checksum TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (cx, cy, cz)
);

CREATE INDEX chunks_updated_at ON chunks (updated_at);

CREATE TABLE players (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    pos_x REAL NOT NULL DEFAULT 0,
    pos_y REAL NOT NULL DEFAULT 0,
    pos_z REAL NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    last_seen_at TEXT
);

CREATE INDEX players_last_seen_at ON players (last_seen_at);

-- migrate:down
DROP INDEX players_last_seen_at;
DROP TABLE players;
DROP INDEX chunks_updated_at;
DROP TABLE chunks;
