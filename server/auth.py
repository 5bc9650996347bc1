"""Bearer-token authentication for the HTTP transport, through the MCP SDK's own hook (a `TokenVerifier`): the
SDK's middleware answers 401 with a WWW-Authenticate header to a request without the token."""

from __future__ import annotations

import hmac
from typing import Any

from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from pydantic import AnyHttpUrl

from llava_video_mcp.server.settings import Settings


class StaticTokenVerifier:
    """One shared token, compared in constant time."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    async def verify_token(self, token: str) -> AccessToken | None:
        if hmac.compare_digest(token.encode(), self._token):
            return AccessToken(token="bearer", client_id="llava-video-mcp", scopes=[])
        return None


def auth_options(settings: Settings) -> dict[str, Any]:
    """MCPServer's auth arguments: a token verifier when the HTTP transport has a token, else none."""
    if settings.transport != "http" or not settings.auth_token:
        return {}
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return {
        "token_verifier": StaticTokenVerifier(settings.auth_token),
        "auth": AuthSettings(
            issuer_url=AnyHttpUrl(f"http://{host}:{settings.port}"),
            resource_server_url=None,
            validate_token_resource=False,
        ),
    }
