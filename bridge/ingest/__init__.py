"""Media forks: PBXs that stream a call's audio to the bridge over a socket (docs/media-forks.md).

One thin adapter per protocol reads its wire format through ``bridge.core.forks`` and feeds
:mod:`bridge.ingest.fork`, which joins streams into calls on the one lifecycle of
:class:`bridge.call.Call`.  (SIP and WebRTC, the first two sources, live in ``bridge/sip`` and
``bridge/webrtc``.)

* :mod:`~bridge.ingest.audiosocket`: Asterisk ``AudioSocket()`` / ``chan_audiosocket`` (TCP).
"""
