"""SIP ingest: pjsua2 worker processes and the pure logic they share with the main process.

::

    wire        the worker <-> main process message framing (sans-I/O)
    message     a raw SIP message read again: headers, request-URI, body (sans-I/O)
    offer       SDP offer parsing and the codec decision (sans-I/O)
    multipart   a body by its parts (RFC 2046 multipart/*) (sans-I/O)
    siprec      SIPREC offers: rs-metadata, streams and roles (sans-I/O)
    dtmf        RFC 4733 events into digits; SIP INFO dtmf-relay bodies (sans-I/O)
    policy      admission (source, capacity, offer) and call-end causes (sans-I/O)
    spec        what one worker is told to do (ports, codecs, routes), as JSON on its command line
    worker      the pjsua2 adapter: ``python -m bridge.sip.worker --spec JSON --fd N``
    dispatcher  Kamailio in front of several workers: its config rendered, its process run
    supervisor  the worker processes, seen from the main process: started, restarted, stopped
    ingest      the main process's side: worker messages into calls (bridge.call) and legs

Only ``worker`` imports pjsua2; the main process (``ingest``, ``supervisor``) never does.
"""
