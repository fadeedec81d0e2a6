"""SIP settings: the ``[sip]`` table (listen addresses, transports and TLS, RTP ports, codecs,
allowed sources, workers, the Kamailio dispatcher, agents, registration with a PBX) and routes
(which mode a call gets: ``direct``, ``b2bua``; SIPREC sessions are recognised by their INVITE).

The bridge is an IP trunk target that accepts calls from ``allowed_sources``, or, given
``registrar`` and ``auth_user`` (the password in ``BRIDGE_SIP_AUTH_PASSWORD``), an extension of
a PBX: each worker's pjsua2 account sends the REGISTER, answers the digest challenge and keeps
the registration fresh (RFC 3261 §10, §22; ``bridge.sip.worker.endpoint``).

A top-level package, shipped as this folder with ``kamailio.cfg.tmpl``; read through the
bridge's one TOML/env reader (:mod:`bridge.config.reader`).
"""

from sip_config.settings import (
    PJSUA_MAX_CALLS,
    SUPPORTED_CODECS,
    TRANSPORTS,
    SipSettings,
    load_sip_settings,
    settings_from,
)

__all__ = [
    "PJSUA_MAX_CALLS",
    "SUPPORTED_CODECS",
    "TRANSPORTS",
    "SipSettings",
    "load_sip_settings",
    "settings_from",
]
