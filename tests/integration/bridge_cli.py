"""Run the ``bridge`` command as a user would: a subprocess, with no ``BRIDGE_*`` leaking in."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def bridge(
    *args: str | Path, env: dict[str, str] | None = None, timeout_s: float = 600
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "bridge", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=environ,
    )
