"""Media forks: the wire formats PBXs use to stream a call's audio to a transcriber (sans-I/O).

Each module reads one protocol's messages into plain values and raises
:class:`bridge.errors.RemoteProtocolError` for input the protocol does not allow; the adapters
in ``bridge/ingest/`` do the I/O and feed :class:`bridge.call.Call`.  docs/media-forks.md
describes every format with its sources.
"""
