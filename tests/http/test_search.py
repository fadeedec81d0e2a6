"""FTS5 search, filters, pagination, deletion and retention on a real SQLite file."""

from __future__ import annotations

from pathlib import Path

from storage import TranscriptStore

from .helpers import T0, call, leg, seg


async def seeded(path: Path) -> TranscriptStore:
    store = await TranscriptStore.open(path)
    for i in range(7):
        cid = f"call-{i}"
        await store.add_call(call(cid, title=f"+4930123{i} -> Support", at=T0 + i * 1000))
        await store.add_leg(leg(f"leg-{i}", cid))
        store.put_segment(
            seg(f"my router number {i} is broken", final=True, leg_id=f"leg-{i}", call_id=cid)
        )
        store.put_segment(seg("partial secret words", seq=1, leg_id=f"leg-{i}", call_id=cid))
        await store.set_call_agent(cid, "alice" if i % 2 else "bob")
        if i < 5:
            await store.end_call(cid, ended_at_ms=T0 + i * 1000 + 500, cause="bye")
    await store.flush()
    return store


async def test_full_text_search_over_finals_with_filters_and_pages(tmp_path: Path) -> None:
    store = await seeded(tmp_path / "t.db")
    try:
        page = await store.search_calls(text="ROUTER broken")
        assert page.total == 7 and [c.call_id for c in page.calls][0] == "call-6"
        assert (await store.search_calls(text="3 number")).total == 1  # every word, any order
        assert (await store.search_calls(text='"3"')).total == 1  # quotes are literal text
        assert (await store.search_calls(text="secret")).total == 0  # partials not indexed
        assert (await store.search_calls(text="rout*")).total == 0  # no FTS syntax from users
        assert (await store.search_calls(active=True)).total == 2
        assert (await store.search_calls(agent="alice")).total == 3
        assert (await store.search_calls(who="49301235")).calls[0].call_id == "call-5"
        assert (await store.search_calls(since_ms=T0 + 2000, until_ms=T0 + 4000)).total == 2
        first = await store.search_calls(limit=3)
        second = await store.search_calls(limit=3, offset=3)
        assert [c.call_id for c in first.calls + second.calls] == [
            f"call-{i}" for i in range(6, 0, -1)
        ]
        assert first.calls[0].agent == "bob"
    finally:
        await store.close()


async def test_delete_and_retention_remove_text_from_the_index(tmp_path: Path) -> None:
    store = await seeded(tmp_path / "t.db")
    try:
        assert await store.delete_call("call-1") is True
        assert await store.delete_call("call-1") is False
        assert await store.get_call("call-1") is None
        assert (await store.search_calls(text="router")).total == 6
        assert await store.delete_ended_before(T0 + 3000) == 2  # call-0 and call-2
        assert (await store.search_calls(text="router")).total == 4
        assert (await store.search_calls(active=True)).total == 2  # active calls are kept
    finally:
        await store.close()
