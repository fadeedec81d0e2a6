"""``POST /api/v1/calls/{id}/pause`` and ``/resume``: a payment step (PCI DSS) on a live call.

While a call is paused nothing of it is transcribed, stored or pushed; its legs' spans become
gaps with reason ``paused`` (:meth:`bridge.call.Call.pause`).  The agent the call belongs to or
any supervisor may pause it; the answer says the call's state and whether this request changed
it, so an IVR or a CRM button may send it twice.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bridge.call import live_call
from storage import TranscriptStore

from .problems import HttpProblem
from .session import principal_of


async def pause_call(request: Request) -> Response:
    return await _set(request, paused=True)


async def resume_call(request: Request) -> Response:
    return await _set(request, paused=False)


async def visible_transcript(request: Request, store: TranscriptStore, call_id: str) -> Any:
    """The stored call, if the request's principal may see it (404 unknown, 403 another
    agent's)."""
    principal = principal_of(request)
    transcript = await store.get_call(call_id)
    if transcript is None:
        raise HttpProblem(404, f"no call {call_id!r}", kind="not-found")
    if not principal.can_see(transcript.call.agent):
        raise HttpProblem(403, f"call {call_id!r} belongs to another agent", kind="forbidden")
    return transcript


async def _set(request: Request, *, paused: bool) -> Response:
    principal = principal_of(request)
    call_id = request.path_params["call_id"]
    call = live_call(call_id)
    if call is None:
        await visible_transcript(request, request.app.state.bridge.store, call_id)
        raise HttpProblem(
            409,
            f"call {call_id!r} is not in progress on this bridge (it has ended): there is "
            "nothing to pause or resume",
            kind="conflict",
        )
    if not principal.can_see(call.info.agent):
        raise HttpProblem(403, f"call {call_id!r} belongs to another agent", kind="forbidden")
    by = f"agent:{principal.agent}" if principal.agent else principal.role.value
    changed = call.pause(by) if paused else call.resume(by)
    return JSONResponse({"id": call_id, "paused": call.paused, "changed": changed})
