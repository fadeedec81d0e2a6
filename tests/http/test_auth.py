"""Token parsing and visibility rules (pure)."""

from __future__ import annotations

from bridge.http.auth import Principal, Role, authenticate, bearer_token, parse_tokens


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
    import pytest

    from bridge.config import load_config
    from bridge.errors import ConfigError

    config = load_config(None, {"BRIDGE_API_TOKENS": "abcdefgh1:agent:al", "HOME": "/tmp"})
    assert config.http.api_tokens == {"abcdefgh1": Principal(Role.AGENT, "al")}
    with pytest.raises(ConfigError) as info:
        load_config(
            None,
            {"BRIDGE_API_TOKENS": "x:boss", "BRIDGE_WEBHOOK_URL": "ftp://x", "HOME": "/tmp"},
        )
    assert len(info.value.problems) == 3
