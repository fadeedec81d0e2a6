"""The bridge's HTTP service: REST and live WebSocket APIs, exports, dashboards, metrics.
Only :mod:`bridge.app` (which wires ``bridge serve``) imports it.

Modules: ``app`` (routes; :func:`bridge.http.app.create_app`), ``server`` (uvicorn's transport,
guarded against hostile clients; :mod:`bridge.app` starts and stops it), ``live_ws`` (hub
subscriptions over WebSocket), ``uploads`` (``POST /api/v1/calls``: the request's checks and
refusals; its queue and jobs are :mod:`bridge.uploads`), ``upload_body`` (the body to disk),
``auth`` (how a request presents its token, the same-origin proof; tokens and roles are
:mod:`bridge.auth`'s), ``params`` (query values, read strictly), ``problems`` (RFC 9457
bodies and the app's error handlers), ``openapi`` (the API document).
"""
