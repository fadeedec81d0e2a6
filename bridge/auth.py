"""API tokens: who a token belongs to, and what its holder may see and start.  Pure: no I/O.

Tokens come from configuration (``http.api_tokens`` / ``BRIDGE_API_TOKENS``): a comma-separated
list of ``token:role[:agent]`` with role ``supervisor`` (sees every call) or ``agent`` (sees only
the calls carrying its agent id).  How a request presents its token, and the browser's login
cookie, are HTTP's: :mod:`bridge.http.auth`.
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from bridge.core.types import LegRole, roles_from_text
from bridge.errors import ConfigError, Forbidden


class Role(enum.Enum):
    SUPERVISOR = "supervisor"
    AGENT = "agent"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a token belongs to."""

    role: Role
    agent: str | None = None  # the agent id, for role AGENT

    @property
    def is_supervisor(self) -> bool:
        return self.role is Role.SUPERVISOR

    def can_see(self, call_agent: str | None) -> bool:
        """Supervisors see every call; an agent only calls assigned to it."""
        return self.is_supervisor or (call_agent is not None and call_agent == self.agent)


def parse_tokens(spec: str) -> tuple[dict[str, Principal], list[str]]:
    """``"s3cret:supervisor,abc:agent:alice"`` -> ({token: principal}, problems)."""
    tokens: dict[str, Principal] = {}
    problems: list[str] = []
    for n, item in enumerate((x.strip() for x in spec.split(",")), 1):
        if not item:
            continue
        parts = item.split(":")
        if len(parts) < 2 or not parts[0]:
            problems.append(f"API token #{n}: expected token:role[:agent], got {_mask(item)}")
            continue
        token, role_name, *rest = parts
        try:
            role = Role(role_name)
        except ValueError:
            problems.append(
                f"API token #{n}: unknown role {role_name!r} (expected supervisor or agent)"
            )
            continue
        agent = rest[0] if rest and rest[0] else None
        if role is Role.AGENT and agent is None:
            problems.append(f"API token #{n}: role agent needs an agent id (token:agent:ID)")
            continue
        if len(token) < 8:
            problems.append(f"API token #{n}: too short; use at least 8 random characters")
            continue
        tokens[token] = Principal(role, agent)
    return tokens, problems


def _mask(item: str) -> str:
    return repr(item[:2] + "…") if len(item) > 2 else repr(item)


def authenticate(tokens: Mapping[str, Principal], token: str | None) -> Principal | None:
    """The principal of ``token`` (compared in constant time), or None."""
    if not token:
        return None
    found: Principal | None = None
    for known, principal in tokens.items():
        if hmac.compare_digest(known.encode(), token.encode()):
            found = principal
    return found


@dataclass(frozen=True, slots=True)
class NewCall:
    """A call started over the API (an uploaded recording, a WHIP offer): whose it is, and the
    roles of its channels or tracks, in order."""

    agent: str | None
    roles: tuple[LegRole, ...]


def new_call(
    principal: Principal,
    *,
    agent: str | None,
    roles: str | None,
    default_roles: tuple[LegRole, ...],
) -> NewCall:
    """The call ``principal`` may start for the requested ``agent`` (None: none named) with the
    requested ``roles`` (``"caller,agent"``; None: ``default_roles``).

    A supervisor starts calls for any agent or none; an agent only for itself, and a call it
    starts is its own whether it names itself or not (so it can see the call).

    Raises:
        Forbidden: an agent naming another agent.
        ConfigError: an unknown role, or not one or two.
    """
    if not principal.is_supervisor:
        if agent is not None and agent != principal.agent:
            raise Forbidden("agents may start calls only for themselves")
        agent = principal.agent
    if roles is None:
        return NewCall(agent, default_roles)
    try:
        return NewCall(agent, roles_from_text(roles, example="roles=caller,agent"))
    except ValueError as exc:
        raise ConfigError(f"query roles: {exc}") from None
