"""The engine's HTTP answers, given from ``process_request`` before any websocket handshake.

As in vLLM: ``GET /health`` → 200, empty body; ``GET /v1/models`` → the OpenAI model list; with
an API key, any ``/v1/*`` request without ``Authorization: Bearer <key>`` → 401
``{"error":"Unauthorized"}``; a websocket upgrade on ``/v1/realtime`` goes on to the handshake
(``session.py``), one on any other route is refused 403, any other request is a 404.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
import uuid
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from bridge.engine.config import EngineConfig

__all__ = ["EngineRoutes", "json_response", "random_hex16"]

# vLLM's AuthenticationMiddleware guards these prefixes; /health stays open.
_GUARDED_PREFIXES = ("/v1", "/v2", "/inference", "/cohere")


def json_response(connection: ServerConnection, status: int, body: object) -> Response:
    """Starlette's JSONResponse: compact separators, raw UTF-8."""
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    response = connection.respond(status, text)
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = "application/json"
    return response


def random_hex16() -> str:
    """vLLM's random_uuid(): 64 random bits as 16 hex digits."""
    return f"{uuid.uuid4().int & ((1 << 64) - 1):016x}"


class EngineRoutes:
    """The HTTP side of one engine: health, the model card, the API key."""

    def __init__(self, config: EngineConfig, root: str) -> None:
        self.config = config
        self.root = root  # what runs (the recognizer's description): the card's ``root``
        self._key_hash = (
            hashlib.sha256(config.api_key.encode()).digest() if config.api_key else None
        )

    def models_body(self) -> dict[str, Any]:
        """vLLM's ``ModelList`` with one ``ModelCard`` (model_dump of the pydantic models)."""
        permission = {
            "id": f"modelperm-{random_hex16()}",
            "object": "model_permission",
            "created": int(time.time()),
            "allow_create_engine": False,
            "allow_sampling": True,
            "allow_logprobs": True,
            "allow_search_indices": False,
            "allow_view": True,
            "allow_fine_tuning": False,
            "organization": "*",
            "group": None,
            "is_blocking": False,
        }
        card = {
            "id": self.config.model_name,
            "object": "model",
            "created": int(time.time()),
            "owned_by": "vllm",
            "root": self.root,
            "parent": None,
            "max_model_len": self.config.max_model_len,
            "permission": [permission],
        }
        return {"object": "list", "data": [card]}

    def authorized(self, headers: Headers) -> bool:
        if self._key_hash is None:
            return True
        scheme, _, token = headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        return secrets.compare_digest(hashlib.sha256(token.encode()).digest(), self._key_hash)

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """The answer to ``request``, or None to go on with the websocket handshake."""
        path = urlsplit(request.path).path
        if path.startswith(_GUARDED_PREFIXES) and not self.authorized(request.headers):
            return json_response(connection, HTTPStatus.UNAUTHORIZED, {"error": "Unauthorized"})
        upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
        if path == "/health" and not upgrade:
            return connection.respond(HTTPStatus.OK, "")
        if path == "/v1/models" and not upgrade:
            return json_response(connection, HTTPStatus.OK, self.models_body())
        if path == "/v1/realtime" and upgrade:
            return None  # go on with the websocket handshake
        if upgrade:  # Starlette refuses a websocket on an unknown route before accepting
            return connection.respond(HTTPStatus.FORBIDDEN, "")
        return json_response(connection, HTTPStatus.NOT_FOUND, {"detail": "Not Found"})
