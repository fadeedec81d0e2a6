"""A baresip 1.0 caller (Debian ``baresip-core``) that plays a WAV file and hangs up at its end.

Used for G.722 (sipp's rtp_stream plays G.711 only).  Config and gotchas from test-peers.md §2
and pjsua2.md §3: the aufile WAV rate must equal the codec rate (16 kHz for G.722), and the
codec is named ``G722/16000/1`` (plain ``G722`` silently falls back to PCMU in 1.0).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.sip.sipp import free_port, free_port_block

BARESIP = shutil.which("baresip") or "/usr/bin/baresip"
MODULES = Path("/usr/lib/baresip/modules")


@dataclass
class BaresipResult:
    returncode: int
    output: str


def write_wav(path: Path, pcm: np.ndarray, rate_hz: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate_hz)
        w.writeframes(pcm.astype("<i2").tobytes())


def call(
    work_dir: Path,
    target: str,
    pcm: np.ndarray,
    *,
    codec: str = "G722/16000/1",
    rate_hz: int = 16000,
    timeout_s: float | None = None,
    tls_cafile: Path | None = None,
) -> BaresipResult:
    """Dial ``sip:bridge@<target>``, play ``pcm`` and hang up at its end; wait for baresip.

    ``tls_cafile``: dial over TLS (``;transport=tls``), trusting the certificates in that file.

    baresip's ``-t`` quits it after ``timeout_s`` (default: the audio plus 4 s) even when the call
    ended long before.
    """
    if timeout_s is None:
        timeout_s = len(pcm) / rate_hz + 4
    work_dir.mkdir(parents=True, exist_ok=True)
    write_wav(work_dir / "source.wav", pcm, rate_hz)
    rtp = free_port_block(10)
    (work_dir / "config").write_text(
        f"sip_listen 127.0.0.1:{free_port()}\n"
        f"rtp_ports {rtp}-{rtp + 9}\n"
        f"audio_source aufile,{work_dir / 'source.wav'}\n"
        f"audio_player aufile,{work_dir / 'rx.wav'}\n"
        "audio_alert aufile,/dev/null\n"
        f"module_path {MODULES}\n"
        "module g711.so\nmodule g722.so\nmodule aufile.so\n"
        "module_app account.so\nmodule_app menu.so\n"
        "net_interface 127.0.0.1\n" + (f"sip_cafile {tls_cafile}\n" if tls_cafile else "")
    )
    (work_dir / "accounts").write_text(f"<sip:caller@127.0.0.1>;regint=0;audio_codecs={codec}\n")
    (work_dir / "contacts").write_text("")
    process = subprocess.Popen(
        [
            BARESIP,
            "-f",
            str(work_dir),
            "-t",
            str(int(timeout_s + 0.5)),
            "-e",
            f"/dial sip:bridge@{target}" + (";transport=tls" if tls_cafile else ""),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout_s + 10)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        output, _ = process.communicate()
    (work_dir / "baresip.log").write_text(output)
    return BaresipResult(process.returncode, output)
