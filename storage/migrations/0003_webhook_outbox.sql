-- 0003: the webhook outbox (storage/outbox.py, bridge/webhooks.py).
--
-- Every event the bridge will POST to the webhook receiver is stored here first and deleted once
-- the receiver took it (a 2xx), so a receiver that is down for hours, or a bridge restart, loses
-- nothing.  Rows leave in ``id`` order per call (a call's later event waits for its earlier
-- ones); ``next_at_ms`` is when the next try is due (backoff), ``attempts`` how many were made.
-- The table is bounded by the code (``max_rows``; the oldest rows are dropped, logged and
-- counted) and rows older than ``max_age_s`` are given up.  No foreign key to ``calls``: a call
-- deleted or expired by retention still has its ``call.ended`` delivered.

CREATE TABLE webhook_outbox (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,  -- order of the events; X-Bridge-Delivery
    call_id       TEXT    NOT NULL,
    event_type    TEXT    NOT NULL,                   -- segment.final | call.ended
    body          BLOB    NOT NULL,                   -- the exact bytes signed and POSTed
    created_at_ms INTEGER NOT NULL,
    next_at_ms    INTEGER NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT
);

CREATE INDEX webhook_outbox_by_call ON webhook_outbox (call_id, id);
