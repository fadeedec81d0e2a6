"""What the pjsua2 wheel's Python API lacks, reached through its C library with ctypes.

Everything here calls functions the wheel's ``_pjsua2*.so`` exports (pjsip 2.15.1, the pinned
``pjsua2-python==2.15.1.post1``), so nothing is compiled:

* :func:`frame_bytes`: copy a SWIG ``ByteVector`` without iterating it (docs/pjsua2.md §4.2);
* :func:`quiet_pjlib`: pjlib's log level before ``libCreate``;
* :func:`add_supported_option_tag`: a tag in ``Supported`` (``siprec``, docs/pjsua2.md §1.3);
* :func:`print_sdp`: an SDP of pjsua's as text, however long;
* :func:`forget_call_id`: a ``pj::Call`` that ended lets go of its pjsua call id;
* :func:`pj_text`: a pjsua2 string that may hold non-UTF-8 bytes, as text;
* :class:`RequestScreen`: a pjsip module that sees every out-of-dialog request before pjsua
  does, so an INVITE the bridge refuses is answered before pjsua builds a dialog and a call
  for it (docs/pjsua2.md "Refusing before pjsua");
* :class:`DialogGuard`: a pjsip module that sees in-dialog messages before any transaction or
  dialog does: it drops an SDP answer pjmedia would abort on (docs/pjsua2.md P14) and answers
  INFO DTMF itself (P15).

Why the screen exists: pjsua2's ``Endpoint::on_incoming_call`` frees the INVITE's cloned
``rdata`` *after* ``onIncomingCall`` returns, without checking it; a non-2xx ``answer()`` from
inside the callback can reset the call first (seen for an INVITE whose multipart body pjsip
could not parse), and the process aborts in ``pjsip_rx_data_free_cloned: Assertion 'rdata'``.
A refusal from the screen never creates a call, so that path is never taken.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pjsua2 as pj
import pjsua2._pjsua2 as native

logger = logging.getLogger("bridge.sip.worker")

_lib = ctypes.CDLL(native.__file__)  # already loaded by pjsua2: the same handle


class PjStr(ctypes.Structure):
    """``pj_str_t``: a pointer and a length, not NUL-terminated."""

    _fields_ = [("ptr", ctypes.c_char_p), ("slen", ctypes.c_long)]


def pj_str(buffer: ctypes.Array[ctypes.c_char]) -> PjStr:
    """A ``pj_str_t`` over ``buffer`` (which must outlive its use)."""
    return PjStr(ctypes.cast(buffer, ctypes.c_char_p), len(buffer.value))


def frame_bytes(vec: Any) -> bytes:
    """Copy a SWIG ``ByteVector`` (libstdc++ vector: begin, end, capacity) without iterating.

    ``bytes(frame.buf)`` costs ~230 µs per frame; this ~1.4 µs (docs/pjsua2.md §4.2).
    """
    start, finish = (ctypes.c_void_p * 2).from_address(int(vec.this))
    if not start or not finish:
        return b""
    return ctypes.string_at(start, finish - start)


def quiet_pjlib(level: int) -> None:
    """Set pjlib's log level before ``libCreate`` (which logs at level 4 otherwise)."""
    _lib.pj_log_set_level(ctypes.c_int(level))


def add_supported_option_tag(tag: str) -> None:
    """Advertise ``tag`` in ``Supported`` (docs/pjsua2.md §1.3: the wheel has no API for it).

    Without ``siprec`` here, pjsua answers a SIPREC INVITE (``Require: siprec``, RFC 7866
    §6.1.1) with 420 Bad Extension before the application sees it.  pjsip copies the string.
    """
    _lib.pjsua_get_pjsip_endpt.restype = ctypes.c_void_p
    _lib.pjsip_endpt_add_capability.argtypes = [
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_int,
        ctypes.c_void_p,
        ctypes.c_uint,
        ctypes.POINTER(PjStr),
    ]
    text = ctypes.create_string_buffer(tag.encode())
    value = pj_str(text)
    status = _lib.pjsip_endpt_add_capability(
        _lib.pjsua_get_pjsip_endpt(), None, pj.PJSIP_H_SUPPORTED, None, 1, ctypes.byref(value)
    )
    if status != 0:
        raise RuntimeError(f"pjsip_endpt_add_capability({tag!r}) failed with status {status}")


@dataclass(frozen=True, slots=True)
class Reply:
    """A final response the bridge sends in pjsua's stead: status, reason, ``Retry-After``."""

    status: int
    reason: str
    retry_after_s: int | None = None


# What a screen is asked: (source "ip:port", the raw message) -> a refusal, or None to let pjsua
# handle the request.  It runs on pjsua's thread, like onIncomingCall, and must not block.
Screen = Callable[[str, bytes], Reply | None]

_ON_RX = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)


class _PjsipModule(ctypes.Structure):
    """``pjsip_module`` (pjsip/sip_module.h): a list member, name, id, priority, callbacks."""

    _fields_ = [
        ("prev", ctypes.c_void_p),
        ("next", ctypes.c_void_p),
        ("name", PjStr),
        ("id", ctypes.c_int),
        ("priority", ctypes.c_int),
        ("load", ctypes.c_void_p),
        ("start", ctypes.c_void_p),
        ("stop", ctypes.c_void_p),
        ("unload", ctypes.c_void_p),
        ("on_rx_request", _ON_RX),
        ("on_rx_response", _ON_RX),
        ("on_tx_request", ctypes.c_void_p),
        ("on_tx_response", ctypes.c_void_p),
        ("on_tsx_state", ctypes.c_void_p),
    ]


class _ListHead(ctypes.Structure):
    """The ``prev``/``next`` head of a ``pjsip_hdr`` list (``PJ_DECL_LIST_MEMBER``)."""

    _fields_ = [("prev", ctypes.c_void_p), ("next", ctypes.c_void_p)]


def _declare() -> None:
    v, i, u = ctypes.c_void_p, ctypes.c_int, ctypes.c_uint
    for name, argtypes, restype in (
        ("pjsua_get_pjsip_endpt", [], v),
        ("pjsip_endpt_register_module", [v, v], i),
        ("pjsip_endpt_unregister_module", [v, v], i),
        ("pjsip_endpt_respond", [v, v, v, i, ctypes.POINTER(PjStr), v, v, v], i),
        ("pjsip_retry_after_hdr_create", [v, u], v),
        ("pjmedia_sdp_print", [v, ctypes.c_char_p, ctypes.c_size_t], i),
        ("_ZN2pj9SipRxData6fromPjER13pjsip_rx_data", [v, v], None),  # SipRxData::fromPj
    ):
        function = getattr(_lib, name)
        function.argtypes, function.restype = argtypes, restype


_declare()
_sip_rx_data_from_pj = _lib._ZN2pj9SipRxData6fromPjER13pjsip_rx_data


class _Module:
    """A pjsip module of ours: ``on_rx`` for requests (and, ``responses``, for responses), on
    pjsua's one thread; it returns True (1) when it consumed the message."""

    def __init__(self, name: bytes, priority: int, *, responses: bool = False) -> None:
        self._callback = _ON_RX(self._on_rx)  # referenced for the module's lifetime
        self._name = ctypes.create_string_buffer(name)
        self._module = _PjsipModule()
        self._module.name = pj_str(self._name)
        self._module.id = -1
        self._module.priority = priority
        self._module.on_rx_request = self._callback
        if responses:
            self._module.on_rx_response = self._callback
        self._rx = pj.SipRxData()  # reused: only pjsua's one thread calls a module
        self._endpt: int | None = None

    def install(self) -> None:
        endpt = _lib.pjsua_get_pjsip_endpt()
        status = _lib.pjsip_endpt_register_module(endpt, ctypes.byref(self._module))
        if status != 0:
            raise RuntimeError(f"pjsip_endpt_register_module failed with status {status}")
        self._endpt = endpt

    def remove(self) -> None:
        """Before ``libDestroy`` (a module's memory must outlive its registration)."""
        if self._endpt is not None:
            _lib.pjsip_endpt_unregister_module(self._endpt, ctypes.byref(self._module))
            self._endpt = None

    def _on_rx(self, rdata: int | None) -> int:
        try:
            if not rdata:
                return 0
            _sip_rx_data_from_pj(int(self._rx.this), rdata)
            # wholeMsg, the bytes as they came
            return self.receive(rdata, str(self._rx.srcAddress), _std_string_bytes(self._rx, 1))
        except Exception:  # P2: nothing may escape into pjsip; the message goes on to pjsua
            logger.exception("%s failed; pjsua handles the message", self._name.value.decode())
            return 0

    def receive(self, rdata: int, source: str, whole: bytes) -> int:
        raise NotImplementedError

    def respond(self, rdata: int, reply: Reply) -> None:
        """Answer the request statefully (``pjsip_endpt_respond``: a UAS transaction then
        absorbs its retransmissions, RFC 3261 §17.2) with ``reply``."""
        reason = ctypes.create_string_buffer(_ascii_reason(reply.reason))
        text = pj_str(reason)
        headers: Any = None
        head = _ListHead()
        if reply.retry_after_s is not None:
            pool = ctypes.c_void_p.from_address(rdata).value  # rdata->tp_info.pool: 1st field
            header = _lib.pjsip_retry_after_hdr_create(pool, reply.retry_after_s)
            if header:
                links = _ListHead.from_address(header)  # the header's own prev/next
                links.prev = links.next = ctypes.addressof(head)
                head.prev = head.next = header
                headers = ctypes.byref(head)
        status = _lib.pjsip_endpt_respond(
            self._endpt, None, rdata, reply.status, ctypes.byref(text), headers, None, None
        )
        if status != 0:
            logger.warning("cannot send %d: pjsip status %d", reply.status, status)


# A dialog guard's question: the message's source and bytes; a reply to send in pjsua's stead,
# a reason to drop it (logged by the guard), or None to let pjsip go on.
Guard = Callable[[str, bytes], Reply | str | None]


class DialogGuard(_Module):
    """A pjsip module before the transaction layer (priority 15 < 16) for what pjsua would
    abort on inside a dialog, where the screen (after the UA layer) never looks:

    * an SDP answer (in an ACK, or a response to our INVITE) is negotiated by pjmedia with no
      pjsua callback first, and some abort it (docs/pjsua2.md P14): the guard drops those.  A
      dropped ACK leaves our 200 unacknowledged, so pjsip sends it again and ends the call
      when its retransmissions time out (RFC 3261 §13.3.1.4); a dropped response times the
      INVITE out;
    * an INFO ``application/dtmf-relay`` body is parsed by pjsua with a reader that aborts on
      an unterminated last line (P15): the worker reads the digit itself and answers.
    """

    PRIORITY = 15

    def __init__(self, guard: Guard) -> None:
        super().__init__(b"mod-bridge-dialog-guard", self.PRIORITY, responses=True)
        self.guard = guard
        self.dropped = 0

    def receive(self, rdata: int, source: str, whole: bytes) -> int:
        verdict = self.guard(source, whole)
        if verdict is None:
            return 0
        if isinstance(verdict, Reply):
            self.respond(rdata, verdict)
        else:
            self.dropped += 1
        return 1


class RequestScreen(_Module):
    """A pjsip module between the UA layer and pjsua's own module.

    Module priorities (pjsip/sip_module.h): the transaction layer (16) absorbs retransmissions,
    the UA layer (32) takes every request of an existing dialog (re-INVITE, BYE, INFO, UPDATE)
    and answers 481 for an unknown one, pjsua (64) turns a new INVITE into a call.  At
    :data:`PRIORITY` the screen therefore sees only out-of-dialog requests that no transaction
    holds: new INVITEs, OPTIONS, MESSAGE, ...  A refused request is answered statefully
    (``pjsip_endpt_respond``: the UAS transaction then absorbs retransmissions and the ACK,
    RFC 3261 §17.2.1) with our status, reason and ``Retry-After`` (§20.33); its body is never
    read again by pjsip.
    """

    PRIORITY = 40

    def __init__(self, screen: Screen) -> None:
        super().__init__(b"mod-bridge-screen", self.PRIORITY)
        self.screen = screen
        self.refused = 0

    def receive(self, rdata: int, source: str, whole: bytes) -> int:
        """True (1): answered here, pjsua never sees the request."""
        if whole.startswith(b"ACK "):
            return 0  # RFC 3261 §17.2.1: an ACK is never answered
        refusal = self.screen(source, whole)
        if refusal is None:
            return 0
        self.respond(rdata, refusal)
        self.refused += 1
        return 1


def _std_string_bytes(rx: Any, index: int) -> bytes:
    """Field ``index`` of a ``pj::SipRxData`` (info, wholeMsg, srcAddress) as raw bytes, so a
    message that is not UTF-8 reaches the screen unchanged.

    The wheel is built with the pre-C++11 libstdc++ string ABI (manylinux2014's devtoolset): a
    ``std::string`` is one pointer to its characters, whose length is the first word of the
    ``_Rep`` header 24 bytes before them.  :func:`_check_string_layout` proves that at import.
    """
    data = ctypes.c_void_p.from_address(int(rx.this) + 8 * index).value
    if not data:
        return b""
    length = ctypes.c_size_t.from_address(data - 24).value
    return ctypes.string_at(data, length)


def _check_string_layout() -> None:
    probe = pj.SipRxData()
    probe.info, probe.wholeMsg, probe.srcAddress = "a", "bc" * 40, "def"
    found = [_std_string_bytes(probe, i) for i in range(3)]
    if found != [b"a", b"bc" * 40, b"def"]:
        raise RuntimeError(f"pj::SipRxData does not have the expected layout: read {found!r}")


_check_string_layout()


def _ascii_reason(reason: str, limit: int = 200) -> bytes:
    """A reason phrase safe on the wire: printable ASCII, bounded (RFC 3261 §25.1 allows
    UTF-8, but a phrase quoting hostile input must not carry its bytes back)."""
    text = reason[:limit].replace("§", "sec. ")
    return "".join(c if " " <= c <= "~" else ascii(c)[1:-1] for c in text).encode("ascii")


PJSUA_INVALID_ID = -1
CALL_ID_OFFSET = 16  # pj::Call: vtable pointer, Account &acc, then pjsua_call_id id (call.hpp)


def forget_call_id(call: Any) -> bool:
    """Set an ended ``pj::Call``'s pjsua call id to ``PJSUA_INVALID_ID`` before it is destroyed.

    ``Call::~Call`` (pjsua2 2.15.1) does ``pjsua_call_set_user_data(id, NULL)`` and hangs up
    ``id`` if it is active, and the object keeps its id after DISCONNECTED.  pjsua hands a freed
    id to the next call at once, so destroying an old object (after its grace period) unhooked a
    *newer* call from its Python object, whose DISCONNECTED then never came (seen: calls left
    active under a stream of short calls), or hung it up.  Returns whether the id was found
    where it should be and cleared.
    """
    slot = ctypes.c_int.from_address(int(call.this) + CALL_ID_OFFSET)
    if slot.value != int(call.getId()) or slot.value == PJSUA_INVALID_ID:
        return False
    slot.value = PJSUA_INVALID_ID
    return True


SDP_PRINT_BYTES = 65536


def print_sdp(session: Any) -> str:
    """The SDP behind a ``pj::SdpSession.pjSdpSession``, printed by pjmedia.

    pjsua2 prints an SDP for its callbacks into a 1,024-byte buffer (``PJSUA2_MAX_SDP_BUF_LEN``)
    and hands over "" when it does not fit (4 audio streams is enough); this has no such limit.
    """
    if session is None:
        return ""
    buffer = ctypes.create_string_buffer(SDP_PRINT_BYTES)
    length = _lib.pjmedia_sdp_print(int(session), buffer, SDP_PRINT_BYTES)
    return buffer.raw[:length].decode("utf-8", "replace") if length > 0 else ""


def pj_text(value: Any) -> str:
    """A string pjsua2 hands over (a ``std::string`` SWIG decodes with ``surrogateescape``) as
    text: bytes that were not UTF-8 (a Latin-1 name in SIPREC metadata) become U+FFFD."""
    return str(value).encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def pjsua_calls_in_use() -> int:
    """pjsua's calls in use (``pjsua_call_get_count``): its slots, of the wheel's 4."""
    return int(_lib.pjsua_call_get_count())
