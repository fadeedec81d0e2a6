"""``POST /api/v1/calls/{id}/pause`` and ``/resume``: a payment step (PCI DSS) on a live call.

While a call is paused nothing of it is transcribed, stored or pushed; its legs' spans become
gaps with reason ``paused`` (:meth:`bridge.call.Call.pause`).  The agent the call belongs to or
any supervisor may pause it; the answer says the call's state and whether this request changed
it, so an IVR or a CRM button may send it twice.
"""

from __future__ import annotations

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


async def _set(request: Request, *, paused: bool) -> Response:
    principal = principal_of(request)
    call_id = request.path_params["call_id"]
    call = live_call(call_id)
    agent = call.info.agent if call is not None else None
    if call is None:
        store: TranscriptStore = request.app.state.bridge.store
        record = await store.get_call(call_id)
        if record is None:
            raise HttpProblem(404, f"no call {call_id!r}", kind="not-found")
        agent = record.call.agent
    if not principal.can_see(agent):
        raise HttpProblem(403, f"call {call_id!r} belongs to another agent", kind="forbidden")
    if call is None:
        raise HttpProblem(
            409,
            f"call {call_id!r} is not in progress on this bridge (it has ended): there is "
            "nothing to pause or resume",
            kind="conflict",
        )
    by = f"agent:{principal.agent}" if principal.agent else principal.role.value
    changed = call.pause(by) if paused else call.resume(by)
    return JSONResponse({"id": call_id, "paused": call.paused, "changed": changed})
