"""The ports Tempo's own services listen on, which every target that reaches them must agree on."""

from __future__ import annotations

API_PORT = 5001
FRONTEND_PORT = 3000
HOST_FRONTEND_PORT = 3004
"""Later Tempo docs publish the frontend on 127.0.0.1:3004; kept for host-side proxies."""
