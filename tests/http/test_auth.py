"""Tokens and visibility rules (bridge.auth), how a request presents a token (bridge.http.auth):
pure."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from bridge.auth import NewCall, Principal, Role, authenticate, new_call, parse_tokens
from bridge.core.types import LegRole
from bridge.errors import ConfigError, Forbidden
from bridge.http.auth import (
    SESSION_COOKIE,
    Presented,
    Via,
    bearer_token,
    cross_site_refusal,
    needs_same_origin,
    presented_token,
    session_cookie_value,
)

from .served import ALICE, SUPERVISOR, serve_bridge


def test_parse_tokens_collects_every_problem() -> None:
    tokens, problems = parse_tokens(
        "supersecret1:supervisor, agentsecret:agent:alice, short:agent:x, nope:boss, "
        "noagent123:agent,"
    )
    assert tokens == {
        "supersecret1": Principal(Role.SUPERVISOR),
        "agentsecret": Principal(Role.AGENT, "alice"),
    }
    assert len(problems) == 3
    assert "too short" in problems[0] and "unknown role 'boss'" in problems[1]
    assert "needs an agent id" in problems[2]


def test_bearer_header_wins_over_query_token() -> None:
    assert bearer_token({"authorization": "Bearer abc"}, {"token": "q"}) == "abc"
    assert bearer_token({"authorization": "Basic abc"}, {"token": "q"}) == "q"
    assert bearer_token({}, {}) is None


def test_agents_see_only_their_calls() -> None:
    tokens = {"t1": Principal(Role.SUPERVISOR), "t2": Principal(Role.AGENT, "alice")}
    sup, alice = authenticate(tokens, "t1"), authenticate(tokens, "t2")
    assert authenticate(tokens, "t3") is None and authenticate(tokens, None) is None
    assert sup is not None and alice is not None
    assert sup.can_see(None) and sup.can_see("bob")
    assert alice.can_see("alice") and not alice.can_see("bob") and not alice.can_see(None)


def test_config_reads_tokens_from_the_environment() -> None:
    from bridge.config import load_config

    config = load_config(None, {"BRIDGE_API_TOKENS": "abcdefgh1:agent:al", "HOME": "/tmp"})
    assert config.http.api_tokens == {"abcdefgh1": Principal(Role.AGENT, "al")}
    with pytest.raises(ConfigError) as info:
        load_config(
            None,
            {"BRIDGE_API_TOKENS": "x:boss", "BRIDGE_WEBHOOK_URL": "ftp://x", "HOME": "/tmp"},
        )
    assert len(info.value.problems) == 3


def test_a_request_presents_its_token_by_header_then_query_then_cookie() -> None:
    cookie = {SESSION_COOKIE: session_cookie_value("to:k,en; x")}
    assert presented_token({"authorization": "Bearer abc"}, {"token": "q"}, cookie) == Presented(
        "abc", Via.BEARER
    )
    assert presented_token({}, {"token": "q"}, cookie) == Presented("q", Via.QUERY)
    # Percent-encoded in the cookie (no comma, semicolon or space in a cookie value), read back.
    assert cookie[SESSION_COOKIE] == "to%3Ak%2Cen%3B%20x"
    assert presented_token({}, {}, cookie) == Presented("to:k,en; x", Via.COOKIE)
    assert presented_token({}, {}, {SESSION_COOKIE: ""}) is None
    assert presented_token({}, {}, {"other": "x"}) is None


def test_only_changes_and_the_websocket_on_the_cookie_need_a_same_origin_proof() -> None:
    cookie, bearer = Presented("t", Via.COOKIE), Presented("t", Via.BEARER)
    query = Presented("t", Via.QUERY)
    for method in ("POST", "PUT", "PATCH", "DELETE", "delete"):
        assert needs_same_origin(cookie, method=method, websocket=False), method
        assert not needs_same_origin(bearer, method=method, websocket=False), method
        assert not needs_same_origin(query, method=method, websocket=False), method
    for method in ("GET", "HEAD", "OPTIONS"):
        assert not needs_same_origin(cookie, method=method, websocket=False), method
    assert needs_same_origin(cookie, method="GET", websocket=True)
    assert not needs_same_origin(bearer, method="GET", websocket=True)


def test_the_same_origin_proof_is_an_origin_naming_the_host_or_fetch_metadata() -> None:
    host = {"host": "bridge.example:8080"}
    passes = [
        {"origin": "http://bridge.example:8080"},
        {"origin": "https://bridge.example:8080"},  # TLS ended by a proxy: the scheme differs
        {"origin": "http://BRIDGE.example:8080"},
        {"sec-fetch-site": "same-origin"},
        {"sec-fetch-site": "same-origin", "origin": "http://bridge.example:8080"},
    ]
    for headers in passes:
        assert cross_site_refusal({**host, **headers}) is None, headers
    refused = [
        {},
        {"origin": "http://bridge.example:8081"},  # another port: the same site, not origin
        {"origin": "http://bridge.example"},  # port 80
        {"origin": "http://evil.example:8080"},
        {"origin": "http://bridge.example:8080.evil.example"},
        {"origin": "null"},
        {"origin": "file://"},
        {"origin": "http://bridge.example:8080/path"},
        {"origin": "http://bridge.example:99999"},
        {"origin": "http://[::1"},
        {"sec-fetch-site": "same-site"},
        {"sec-fetch-site": "cross-site", "origin": "http://bridge.example:8080"},
        {"sec-fetch-site": "none"},
        {"sec-fetch-site": "same-origin", "origin": "http://evil.example"},
    ]
    for headers in refused:
        reason = cross_site_refusal({**host, **headers})
        assert reason is not None and "Authorization: Bearer" in reason, headers
    # Default ports: an Origin without one names 80 or 443, as a Host without one does.
    default_port = {"host": "bridge.example", "origin": "https://bridge.example"}
    assert cross_site_refusal(default_port) is None
    assert cross_site_refusal({"host": "[::1]:8080", "origin": "http://[::1]:8080"}) is None
    assert cross_site_refusal({"host": "", "origin": "http://bridge.example"}) is not None


def test_a_new_call_is_an_agents_own_with_one_role_per_channel() -> None:
    supervisor, alice = Principal(Role.SUPERVISOR), Principal(Role.AGENT, "alice")
    stereo = (LegRole.CALLER, LegRole.AGENT)
    assert new_call(supervisor, agent="bob", roles=None, default_roles=stereo) == NewCall(
        "bob", stereo
    )
    assert new_call(supervisor, agent=None, roles="Agent, customer", default_roles=()) == NewCall(
        None, (LegRole.AGENT, LegRole.CUSTOMER)
    )
    for named in (None, "alice"):  # an agent's call is its own, named or not
        assert new_call(alice, agent=named, roles="speaker", default_roles=stereo) == NewCall(
            "alice", (LegRole.SPEAKER,)
        )
    with pytest.raises(Forbidden, match="^agents may start calls only for themselves$"):
        new_call(alice, agent="bob", roles=None, default_roles=stereo)
    refused = {
        "boss": "query roles: unknown role 'boss' (known: caller, callee, agent, customer, "
        "speaker, unknown)",
        "": "query roles: unknown role '' (known: caller, callee, agent, customer, speaker, "
        "unknown)",
        "caller,agent,customer": "query roles: give one role per channel, e.g. roles=caller,agent",
    }
    for roles, message in refused.items():
        with pytest.raises(ConfigError) as info:
            new_call(supervisor, agent=None, roles=roles, default_roles=stereo)
        assert str(info.value) == message  # HTTP words: no CLI flag


@pytest.mark.parametrize("path", ["/api/v1/calls", "/api/v1/whip"])
async def test_uploads_and_whip_offers_refuse_the_same_way(tmp_path: Path, path: str) -> None:
    """One check for both ways to start a call over HTTP: 403 for another agent's call, 400
    naming the query parameter for bad roles, before the body is read."""
    async with serve_bridge(tmp_path / "t.db") as served, httpx.AsyncClient() as client:

        async def post(token: str, query: str) -> httpx.Response:
            return await client.post(
                f"{served.base}{path}?{query}", headers=served.auth(token), content=b"x"
            )

        other = await post(ALICE, "agent=bob")
        assert other.status_code == 403
        assert other.json()["detail"] == "agents may start calls only for themselves"
        assert other.json()["type"].endswith("/forbidden")
        for query, detail in (
            ("roles=boss", "query roles: unknown role 'boss' (known: "),
            ("roles=caller,agent,customer", "query roles: give one role per channel, e.g. roles="),
        ):
            bad = await post(SUPERVISOR, query)
            assert bad.status_code == 400, query
            assert bad.json()["detail"].startswith(detail), bad.json()
            assert bad.json()["type"].endswith("/bad-query")
            assert "--" not in bad.json()["detail"]
        if path.endswith("whip"):  # a page of another origin may read WHIP refusals (CORS)
            assert other.headers["access-control-allow-origin"] == "*"
