"""The transcript store: calls, legs, segments, words, gaps and events in SQLite.

All SQL of the bridge lives in this package (design.md §4), behind :class:`TranscriptStore`, so a
PostgreSQL implementation of the same interface stays possible.

Modules: ``store`` (the interface and the readers), ``writer`` (the one batching writer task),
``migrate`` (versioned schema, ``migrations/*.sql``), ``connection`` (pragmas, error mapping),
``retention`` (deleting old ended calls).
"""

from .migrate import latest_version
from .retention import retention_loop
from .store import (
    MEDIA_DURATION_EVENT,
    CallPage,
    CallRecord,
    CallTranscript,
    DeadCall,
    LegRecord,
    TranscriptStore,
)

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
