"""Where Tempo's own services listen and keep their data, which every target and operation must agree on."""

from __future__ import annotations

API_PORT = 5001
FRONTEND_PORT = 3000
HOST_FRONTEND_PORT = 3004
"""Later Tempo docs publish the frontend on 127.0.0.1:3004; kept for host-side proxies."""
MEDIA_ROOT = "/app/media"
"""The API's MediaStorage__RootPath in the bundle: media, and chunked imports staged under imports/."""
