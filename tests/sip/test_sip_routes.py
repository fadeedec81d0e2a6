"""Which mode a call gets (sip_config.routes): pure."""

from __future__ import annotations

import ipaddress

import pytest

from bridge.core.types import LegRole
from sip_config.routes import Route, parse_routes, select_route

TAP = Route(mode="b2bua", user="tap-*", target="sip:{ext}@pbx:5060")
FORK = Route(
    source=ipaddress.ip_network("10.0.0.0/8"),
    header=("x-leg-role", "cust*"),
    role=LegRole.CUSTOMER,
)


@pytest.mark.parametrize(
    ("user", "source", "headers", "expected"),
    [
        ("tap-1001", "127.0.0.1", {}, TAP),
        ("1001", "10.1.2.3", {"x-leg-role": "customer"}, FORK),
        ("1001", "10.1.2.3", {}, None),  # the header condition fails
        ("1001", "192.0.2.1", {"x-leg-role": "customer"}, None),  # the source condition fails
        ("1001", "not-an-ip", {"x-leg-role": "customer"}, None),
    ],
)
def test_the_first_route_whose_conditions_all_match_wins(
    user: str, source: str, headers: dict[str, str], expected: Route | None
) -> None:
    assert select_route((TAP, FORK), user=user, source_ip=source, headers=headers) == expected


def test_a_b2bua_target_comes_from_the_header_else_the_template() -> None:
    assert TAP.b2bua_target(user="tap-1001", headers={}) == "sip:1001@pbx:5060"
    header_route = Route(mode="b2bua", target="sip:{user}@pbx", target_header="X-Bridge-Target")
    named = {"x-bridge-target": "<sip:agent7@10.0.0.9>"}
    assert header_route.b2bua_target(user="u", headers=named) == "sip:agent7@10.0.0.9"
    assert header_route.b2bua_target(user="u", headers={}) == "sip:u@pbx"
    assert Route(mode="b2bua", target_header="X-T").b2bua_target(user="u", headers={}) is None


def test_tables_round_trip() -> None:
    problems: list[str] = []
    routes = parse_routes([TAP.as_table(), FORK.as_table()], "t", problems)
    assert problems == []
    assert routes == (TAP, FORK)


def test_every_bad_table_is_reported_with_where_it_is() -> None:
    problems: list[str] = []
    routes = parse_routes(
        [
            {"mode": "fax"},
            {"mode": "b2bua", "user": "tap-*"},
            {"source": "10.0.0.0/33", "role": "boss", "colour": "red"},
            {"header": "no colon", "target": "http://x"},
        ],
        "bridge.toml: sip.routes",
        problems,
    )
    assert routes == ()
    assert problems == [
        "bridge.toml: sip.routes[1].mode: 'fax' is not one of direct, b2bua "
        "(SIPREC sessions are recognised by their Require: siprec)",
        "bridge.toml: sip.routes[2]: mode b2bua needs target or target_header (where to dial)",
        "bridge.toml: sip.routes[3]: unknown key 'colour' (known: user, source, header, mode, "
        "role, agent_role, target, target_header)",
        "bridge.toml: sip.routes[4].header: 'no colon' is not 'Name: pattern'",
        "bridge.toml: sip.routes[4].target: 'http://x' is not a sip: URI",
    ]
    assert parse_routes({"mode": "b2bua"}, "env", problems) == ()
    assert problems[-1].startswith("env: expected [[sip.routes]] tables")
