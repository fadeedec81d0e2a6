"""The bridge's HTTP service: REST and live WebSocket APIs, exports, dashboards, metrics.

Modules: ``app`` (routes; :func:`bridge.http.app.create_app`), ``server`` (``run_http`` for
``bridge serve``: uvicorn plus the retention task), ``live_ws`` (hub subscriptions over
WebSocket), ``uploads`` (``POST /api/v1/calls``: a file as a live call), ``auth`` (how a request
presents its token, the same-origin proof; tokens and roles are :mod:`bridge.auth`'s),
``problems`` (RFC 9457 bodies), ``openapi`` (the API document).
"""
