"""G.711 against known values and a scalar port of the classic Sun ``g711.c``."""

from __future__ import annotations

import numpy as np
import pytest

from bridge.core.g711 import decode_alaw, decode_ulaw, encode_alaw, encode_ulaw

ALL_CODES = bytes(range(256))
ALL_INT16 = np.arange(-32768, 32768, dtype=np.int16)

# -- scalar reference: Sun Microsystems g711.c (1994 update), one value at a time ------------------

_SEG_UEND = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_SEG_AEND = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _search(value: int, table: tuple[int, ...]) -> int:
    for i, end in enumerate(table):
        if value <= end:
            return i
    return 8


def ref_ulaw2linear(u_val: int) -> int:
    u_val = ~u_val & 0xFF
    t = ((u_val & 0x0F) << 3) + 0x84
    t <<= (u_val & 0x70) >> 4
    return 0x84 - t if u_val & 0x80 else t - 0x84


def ref_alaw2linear(a_val: int) -> int:
    a_val ^= 0x55
    t = (a_val & 0x0F) << 4
    seg = (a_val & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t += 0x108
        t <<= seg - 1
    return t if a_val & 0x80 else -t


def ref_linear2ulaw(pcm_val: int) -> int:
    pcm_val >>= 2
    if pcm_val < 0:
        pcm_val = -pcm_val
        mask = 0x7F
    else:
        mask = 0xFF
    pcm_val = min(pcm_val, 8159) + (0x84 >> 2)
    seg = _search(pcm_val, _SEG_UEND)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((pcm_val >> (seg + 1)) & 0x0F)) ^ mask


def ref_linear2alaw(pcm_val: int) -> int:
    pcm_val >>= 3
    if pcm_val >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        pcm_val = -pcm_val - 1
    seg = _search(pcm_val, _SEG_AEND)
    if seg >= 8:
        return 0x7F ^ mask
    aval = seg << 4
    aval |= (pcm_val >> 1) & 0x0F if seg < 2 else (pcm_val >> seg) & 0x0F
    return aval ^ mask


# -- decoding -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "linear"),
    [
        (0x00, -32124),
        (0x80, 32124),
        (0xFF, 0),
        (0x7F, 0),
        (0x7E, -8),
        (0xFE, 8),
        (0x70, -120),
        (0x40, -1884),
    ],
)
def test_ulaw_known_values(code: int, linear: int) -> None:
    assert decode_ulaw(bytes([code])).tolist() == [linear]


@pytest.mark.parametrize(
    ("code", "linear"),
    # Sign bit set = positive in A-law: 0xAA is +32256 and 0x2A is -32256.
    [(0xD5, 8), (0x55, -8), (0xAA, 32256), (0x2A, -32256), (0x80, 5504), (0x00, -5504)],
)
def test_alaw_known_values(code: int, linear: int) -> None:
    assert decode_alaw(bytes([code])).tolist() == [linear]


def test_decode_tables_match_reference() -> None:
    assert decode_ulaw(ALL_CODES).tolist() == [ref_ulaw2linear(c) for c in range(256)]
    assert decode_alaw(ALL_CODES).tolist() == [ref_alaw2linear(c) for c in range(256)]


def test_decode_returns_int16_and_accepts_buffers() -> None:
    for decode in (decode_ulaw, decode_alaw):
        out = decode(bytearray(b"\x01\x02\x03"))
        assert out.dtype == np.int16
        assert out.shape == (3,)
        assert decode(memoryview(b"\x01\x02\x03")).tolist() == out.tolist()
        assert decode(b"").shape == (0,)


def test_decoding_is_odd_symmetric() -> None:
    ulaw = decode_ulaw(ALL_CODES).astype(np.int32)
    alaw = decode_alaw(ALL_CODES).astype(np.int32)
    # µ-law: the sign is bit 7 (code ^ 0x80); A-law likewise after the even-bit inversion.
    assert np.array_equal(ulaw[:128], -ulaw[128:])
    assert np.array_equal(alaw[:128], -alaw[128:])


# -- encoding -----------------------------------------------------------------------------------


def test_encode_matches_reference_for_every_int16() -> None:
    ulaw = np.frombuffer(encode_ulaw(ALL_INT16), dtype=np.uint8)
    alaw = np.frombuffer(encode_alaw(ALL_INT16), dtype=np.uint8)
    values = ALL_INT16.tolist()
    assert ulaw.tolist() == [ref_linear2ulaw(v) for v in values]
    assert alaw.tolist() == [ref_linear2alaw(v) for v in values]


def test_round_trip_of_every_code() -> None:
    assert encode_alaw(decode_alaw(ALL_CODES)) == ALL_CODES
    # µ-law has two zeros (0x7F "-0" and 0xFF "+0"); both decode to 0, which encodes as 0xFF.
    expected = bytes(0xFF if c == 0x7F else c for c in range(256))
    assert encode_ulaw(decode_ulaw(ALL_CODES)) == expected


def test_quantisation_error_is_within_one_step() -> None:
    for encode, decode in ((encode_ulaw, decode_ulaw), (encode_alaw, decode_alaw)):
        levels = np.unique(decode(ALL_CODES).astype(np.int64))
        out = decode(encode(ALL_INT16)).astype(np.int64)
        # every value lands on one of its two neighbouring levels (truncating encoders)
        idx = np.searchsorted(levels, ALL_INT16.astype(np.int64))
        lower = levels[np.clip(idx - 1, 0, len(levels) - 1)]
        upper = levels[np.clip(idx, 0, len(levels) - 1)]
        assert np.all((out == lower) | (out == upper) | (out == levels[0]) | (out == levels[-1]))


def test_encode_rejects_other_dtypes() -> None:
    with pytest.raises(ValueError, match="int16"):
        encode_ulaw(np.zeros(4, dtype=np.int32))
    with pytest.raises(ValueError, match="int16"):
        encode_alaw(np.zeros(4, dtype=np.float32))


def test_encode_speech_level_tone_round_trip_snr() -> None:
    t = np.arange(8000) / 8000
    tone = (10000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    for encode, decode in ((encode_ulaw, decode_ulaw), (encode_alaw, decode_alaw)):
        back = decode(encode(tone)).astype(np.float64)
        err = back - tone
        snr_db = 10 * np.log10(np.sum(tone.astype(np.float64) ** 2) / np.sum(err**2))
        assert snr_db > 33  # G.711 gives about 38 dB for speech-level signals
