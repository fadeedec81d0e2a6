"""WebRTC ingest: WHIP (RFC 9725) offers checked by pure code (``offer``), media by aiortc
(``session``).  The HTTP routes live in ``bridge.http.whip``."""
