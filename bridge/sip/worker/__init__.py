"""One SIP worker process: a pjsua2 endpoint that answers calls and hands their audio over.

Modes (chosen per INVITE: ``Require: siprec`` -> ``siprec``, else the first matching
``[[sip.routes]]``, else ``direct``):

* ``direct``: answer, tap the remote party (one leg);
* ``siprec``: a recording server (RFC 7866): answer every offered audio stream recvonly, with
  its ``a=label``; one leg per stream, its role and speaker from the rs-metadata (RFC 7865);
  ``siprec`` is added to ``Supported`` by ctypes (pjsua2.md §1.3), else pjsua answers 420;
* ``b2bua``: ring the caller, dial the route's target, answer the caller when the target
  answers, bridge the media both ways and tap both (caller and agent legs); hangups, CANCEL and
  the target's failure status pass through (pjsua2.md §2).

Every mode: a hold (RFC 3264 inactive/sendonly re-offer) feeds the legs silence and is stored
as ``sip.hold``/``sip.resume``; a call without RTP for ``rtp_timeout_s`` (not on hold) is hung
up by the bridge (``rtp-timeout``).

Run by :mod:`bridge.sip.supervisor` as ``python -m bridge.sip.worker --spec JSON --fd N``, where
``N`` is its end of a ``SOCK_SEQPACKET`` socket pair (:mod:`bridge.sip.wire`).  The process lives
until the main process sends ``Quit`` or closes the socket, or until SIGTERM/SIGINT.

Media: the RTP of ``direct`` and ``siprec`` calls comes to the worker's own sockets, named in
our answer (:mod:`bridge.sip.media`, placed by :mod:`bridge.sip.rtp`), so pjsua's jitter buffer
and conference clock never touch it; ``b2bua`` calls go through pjsua's conference, which plays
each side out to the other, and are tapped there (:class:`TapPort`).

Threads (test-peers.md §2): ``onIncomingCall``/``onCallState``/``onCallMediaState`` run on
pjsua's ``pjsua_0`` thread; our own RTP sockets are read by the ``rtp-in`` thread; a b2bua tap's
``onFrameReceived`` runs on the conference ``clock`` thread, which serves every call, so a frame
callback only copies the bytes (ctypes, ~1.4 µs) and ``send()``s them (~2 µs, pjsua2.md §4.2).
``onDtmfEvent`` runs on the ``media`` thread (RTP receive, for a b2bua call's RFC 4733 events)
or on ``pjsua_0`` (SIP INFO ``application/dtmf-relay``, which pjsua answers 200 itself),
pjsua2.md §5: it only reads the leg's position and hands a small message over, never waiting.
Pitfalls handled here (pjsua2.md "Pitfalls"):

* P1: ``getInfo()`` is kept in a local before touching ``.media``;
* P2: an exception escaping a callback pins the ``Call`` and aborts ``libDestroy``: every
  callback catches everything and logs it;
* P3: taps are (re)connected, and our streams' formats re-read, on every ``onCallMediaState``;
* P6 / test-peers.md finding 3: ``Call`` and ``AudioMediaPort`` objects are kept for a grace
  period after DISCONNECTED (the graveyard) and all are gone before ``libDestroy``.

Modules: :mod:`.endpoint` (the pjsua2 endpoint, account, loop, shutdown), :mod:`.admission`
(INVITE decisions), :mod:`.call` (one pjsua call: media, SIPREC updates, DTMF, end),
:mod:`.taps` (b2bua conference taps), :mod:`.outbox` (the socket to the main process),
:mod:`.__main__` (the process); the C-level reach-ins are :mod:`bridge.sip.pjnative`.
"""
