"""The transcript store: calls, legs, segments, words, gaps and events in SQLite.

All SQL of the bridge lives in this package (design.md §4), behind :class:`TranscriptStore`, so a
PostgreSQL implementation of the same interface stays possible.

Modules, one job each: ``store`` (the :class:`TranscriptStore` interface: open, close, writes),
``reader`` (its reads: listing, search, whole transcripts, id prefixes), ``records`` (the values
it returns), ``recovery`` (ending the calls a dead process left active), ``retention`` (deleting
old ended calls), ``writer`` (the one batching writer task) with ``pending`` (its queue and
overflow rule), ``transaction`` (one batch into SQLite) and ``statements`` (the SQL it runs),
``outbox`` (the webhook outbox), ``migrate`` (versioned schema, ``migrations/*.sql``),
``connection`` (pragmas, error mapping).
"""

from .migrate import latest_version
from .records import (
    MEDIA_DURATION_EVENT,
    CallPage,
    CallRecord,
    CallTranscript,
    DeadCall,
    LegRecord,
)
from .retention import retention_loop
from .store import TranscriptStore

__all__ = [
    "MEDIA_DURATION_EVENT",
    "CallPage",
    "CallRecord",
    "CallTranscript",
    "DeadCall",
    "LegRecord",
    "TranscriptStore",
    "latest_version",
    "retention_loop",
]
