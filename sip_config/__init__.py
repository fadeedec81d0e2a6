"""SIP settings (listen addresses, transports, RTP ports, codecs, allowed sources, workers,
the Kamailio dispatcher) and routes (which mode a call gets: ``direct``, ``b2bua``; SIPREC
sessions are recognised by their INVITE).

Registered-extension accounts (digest auth to a PBX) are not built yet: the bridge is an IP
trunk target that accepts calls from ``allowed_sources``.
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
