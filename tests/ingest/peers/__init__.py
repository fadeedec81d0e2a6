"""Media-fork peers for the tests, written from the protocols' published sources: one module
per protocol, the pacing loop and the speech conversions in :mod:`.common`.

Each peer speaks its protocol as the PBX or the service does (docs/media-forks.md): the
handshake, the first messages, audio paced in real time on an absolute 20 ms schedule, DTMF, the
hangup.  Everything is importable from this package.
"""

from tests.ingest.peers.ari import RTP_PAYLOAD_TYPES, AriCall, FakeAsterisk, rtp_audio
from tests.ingest.peers.asterisk_ws import ASTERISK_FRAME_BYTES, AsteriskWsPeer, asterisk_audio
from tests.ingest.peers.audiohook import STEREO, AudioHookPeer
from tests.ingest.peers.audiosocket import AudioSocketPeer
from tests.ingest.peers.common import (
    FRAME_MS,
    frames_of,
    interleave,
    interleave_ulaw,
    paced,
    send_paced,
    slin8k,
    slin16k,
    ulaw8k,
)
from tests.ingest.peers.freeswitch import FreeSwitchPeer
from tests.ingest.peers.jambonz import JambonzListenPeer, JambonzSttPeer, basic_auth
from tests.ingest.peers.twilio import CONNECTED, TwilioPeer

__all__ = [
    "ASTERISK_FRAME_BYTES",
    "CONNECTED",
    "FRAME_MS",
    "RTP_PAYLOAD_TYPES",
    "STEREO",
    "AriCall",
    "AsteriskWsPeer",
    "AudioHookPeer",
    "AudioSocketPeer",
    "FakeAsterisk",
    "FreeSwitchPeer",
    "JambonzListenPeer",
    "JambonzSttPeer",
    "TwilioPeer",
    "asterisk_audio",
    "basic_auth",
    "frames_of",
    "interleave",
    "interleave_ulaw",
    "paced",
    "rtp_audio",
    "send_paced",
    "slin8k",
    "slin16k",
    "ulaw8k",
]
