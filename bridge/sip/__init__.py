"""SIP ingest: pjsua2 worker processes and the pure logic they share with the main process.

::

    wire      the worker -> main process message framing (sans-I/O)
    offer     SDP offer parsing and the codec decision (sans-I/O)
    policy    admission (source, capacity) and call-end causes (sans-I/O)
    spec      what one worker is told to do (ports, codecs, limits), as JSON on its command line
    worker    the pjsua2 adapter: ``python -m bridge.sip.worker --spec JSON --fd N``

Only ``worker`` imports pjsua2; the main process (``bridge.ingest``) never does.
"""
