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
