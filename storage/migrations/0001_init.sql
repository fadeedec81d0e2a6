-- 0001: the first transcript schema.
--
-- Times (bridge/core/types.py): *_at_ms are wall-clock instants, milliseconds since the Unix epoch
-- (UTC); start_ms, end_ms and duration_ms are milliseconds on the leg clock (design.md §2).
-- Enum columns hold the enum's value ('sip', 'caller', ...).  Booleans are 0 or 1.
-- Keep this file portable SQL where it costs nothing: PostgreSQL should be able to follow it.

CREATE TABLE calls (
    call_id       TEXT    NOT NULL PRIMARY KEY,
    source        TEXT    NOT NULL,               -- LegSource
    title         TEXT    NOT NULL DEFAULT '',
    started_at_ms INTEGER NOT NULL,
    ended_at_ms   INTEGER,                        -- NULL while the call is active
    end_cause     TEXT,
    raw_metadata  TEXT                            -- e.g. the SIPREC metadata XML
);

-- list_calls(): newest first.
CREATE INDEX calls_by_start ON calls (started_at_ms DESC, call_id DESC);

CREATE TABLE legs (
    leg_id        TEXT    NOT NULL PRIMARY KEY,
    call_id       TEXT    NOT NULL REFERENCES calls (call_id) ON DELETE CASCADE,
    role          TEXT    NOT NULL,               -- LegRole
    label         TEXT    NOT NULL DEFAULT '',
    codec         TEXT    NOT NULL DEFAULT '',
    source        TEXT    NOT NULL,               -- LegSource
    started_at_ms INTEGER NOT NULL,
    ended_at_ms   INTEGER,                        -- NULL while the leg is active
    duration_ms   INTEGER                         -- leg clock at the end
);

CREATE INDEX legs_by_call ON legs (call_id, started_at_ms);

-- One row per (leg_id, seq): the newest revision; a final row is never replaced by a partial.
CREATE TABLE segments (
    leg_id        TEXT    NOT NULL REFERENCES legs (leg_id) ON DELETE CASCADE,
    seq           INTEGER NOT NULL,
    call_id       TEXT    NOT NULL REFERENCES calls (call_id) ON DELETE CASCADE,
    start_ms      INTEGER NOT NULL,
    end_ms        INTEGER NOT NULL,
    text          TEXT    NOT NULL,
    final         INTEGER NOT NULL CHECK (final IN (0, 1)),
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (leg_id, seq)
) WITHOUT ROWID;

-- get_call(): a call's segments in time order.
CREATE INDEX segments_by_call ON segments (call_id, start_ms);

-- The words of the stored revision of a segment, replaced whenever the segment is.
CREATE TABLE words (
    leg_id   TEXT    NOT NULL,
    seq      INTEGER NOT NULL,
    idx      INTEGER NOT NULL,                    -- 0-based position in the segment
    text     TEXT    NOT NULL,
    start_ms INTEGER NOT NULL,
    end_ms   INTEGER NOT NULL,
    PRIMARY KEY (leg_id, seq, idx),
    FOREIGN KEY (leg_id, seq) REFERENCES segments (leg_id, seq) ON DELETE CASCADE
) WITHOUT ROWID;

CREATE TABLE gaps (
    id          INTEGER PRIMARY KEY,
    call_id     TEXT    NOT NULL REFERENCES calls (call_id) ON DELETE CASCADE,
    leg_id      TEXT    NOT NULL REFERENCES legs (leg_id) ON DELETE CASCADE,
    start_ms    INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    reason      TEXT    NOT NULL
);

CREATE INDEX gaps_by_call ON gaps (call_id, start_ms);
CREATE INDEX gaps_by_leg ON gaps (leg_id);

CREATE TABLE events (
    id      INTEGER PRIMARY KEY,
    call_id TEXT    NOT NULL REFERENCES calls (call_id) ON DELETE CASCADE,
    leg_id  TEXT    REFERENCES legs (leg_id) ON DELETE CASCADE,   -- NULL: about the whole call
    at_ms   INTEGER NOT NULL,                     -- leg clock when leg_id is set, else wall clock
    kind    TEXT    NOT NULL,
    detail  TEXT    NOT NULL DEFAULT ''
);

CREATE INDEX events_by_call ON events (call_id, id);
CREATE INDEX events_by_leg ON events (leg_id);
