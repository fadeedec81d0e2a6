"""Configuration: a TOML file, then ``BRIDGE_*`` environment variables, then command-line options.

Every problem is collected and reported at once (``ConfigError.problems``), each naming where the
value came from and what is expected, before anything starts.  Nothing else in the bridge reads
``os.environ``: the environment is passed in.

Modules: ``reader`` (the one TOML/env reader every loader uses: kinds, origins, problems),
``settings`` (the bridge's own tables and their checks).  The ``[sip]`` table is the top-level
:mod:`sip_config` package's, read by the same reader.
"""

from bridge.config.settings import (
    DEFAULT_MODEL,
    VALID_DELAYS_MS,
    AsrConfig,
    BridgeConfig,
    HttpConfig,
    SegmentConfig,
    ServeConfig,
    WebRtcConfig,
    default_db_path,
    load_config,
)

__all__ = [
    "DEFAULT_MODEL",
    "VALID_DELAYS_MS",
    "AsrConfig",
    "BridgeConfig",
    "HttpConfig",
    "SegmentConfig",
    "ServeConfig",
    "WebRtcConfig",
    "default_db_path",
    "load_config",
]
