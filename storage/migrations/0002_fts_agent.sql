-- 0002: full-text search over final segment text, and the agent a call belongs to.
--
-- segments is WITHOUT ROWID, and an external-content FTS5 table needs an integer rowid, so the
-- final text goes through segment_text (rowid table, one row per final segment) and segments_fts
-- indexes it as external content (https://www.sqlite.org/fts5.html#external_content_tables).
-- Only finals are indexed: a final never changes again (partials would rewrite the index at the
-- ASR step rate).  Triggers keep both tables in step, deletes included (calls cascade to
-- segments, segments to segment_text, segment_text to the index).

ALTER TABLE calls ADD COLUMN agent TEXT;                -- NULL: no agent (supervisors only)

CREATE INDEX calls_by_agent ON calls (agent, started_at_ms DESC);
CREATE INDEX calls_by_end ON calls (ended_at_ms);

CREATE TABLE segment_text (
    id      INTEGER PRIMARY KEY,
    leg_id  TEXT    NOT NULL,
    seq     INTEGER NOT NULL,
    call_id TEXT    NOT NULL,
    text    TEXT    NOT NULL,
    UNIQUE (leg_id, seq)
);

CREATE INDEX segment_text_by_call ON segment_text (call_id);

CREATE VIRTUAL TABLE segments_fts USING fts5 (
    text, content = 'segment_text', content_rowid = 'id', tokenize = 'unicode61 remove_diacritics 2'
);

CREATE TRIGGER segment_text_ai AFTER INSERT ON segment_text BEGIN
    INSERT INTO segments_fts (rowid, text) VALUES (new.id, new.text);
END;

CREATE TRIGGER segment_text_ad AFTER DELETE ON segment_text BEGIN
    INSERT INTO segments_fts (segments_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;

CREATE TRIGGER segments_final_ai AFTER INSERT ON segments WHEN new.final = 1 BEGIN
    INSERT INTO segment_text (leg_id, seq, call_id, text)
    VALUES (new.leg_id, new.seq, new.call_id, new.text);
END;

-- A partial turning final, or a final written again (a replay): replace the indexed text.
CREATE TRIGGER segments_final_au AFTER UPDATE ON segments WHEN new.final = 1 BEGIN
    DELETE FROM segment_text WHERE leg_id = old.leg_id AND seq = old.seq;
    INSERT INTO segment_text (leg_id, seq, call_id, text)
    VALUES (new.leg_id, new.seq, new.call_id, new.text);
END;

CREATE TRIGGER segments_ad AFTER DELETE ON segments WHEN old.final = 1 BEGIN
    DELETE FROM segment_text WHERE leg_id = old.leg_id AND seq = old.seq;
END;

INSERT INTO segment_text (leg_id, seq, call_id, text)
SELECT leg_id, seq, call_id, text FROM segments WHERE final = 1;
