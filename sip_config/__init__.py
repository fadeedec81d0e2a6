"""SIP settings (listen addresses, transports, RTP ports, codecs, allowed sources, workers).

Routes and accounts (SIPREC, B2BUA, registered extensions) come with later slices of the SIP
ingest issue; this slice serves mode ``direct`` only.
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
