"""Where Tempo's own services listen and keep their data, which every target and operation must agree on."""

from __future__ import annotations

API_PORT = 5001
"""The API's own port inside its container (ASPNETCORE_URLS)."""
IMPORT_PORT = 5001
"""The public port a 2.1.x-2.6.x browser sends bulk imports to: its frontend builds
`${location.protocol}//${location.hostname}:5001` itself, so this is fixed, not a setting."""
HOST_API_PORT = 5002
"""Loopback port a host proxy reaches the API on when the proxy binds IMPORT_PORT itself (the two
would collide on 5001); other host placements keep the API on 127.0.0.1:API_PORT."""
FRONTEND_PORT = 3000
HOST_FRONTEND_PORT = 3004
"""Later Tempo docs publish the frontend on 127.0.0.1:3004; kept for host-side proxies."""
MEDIA_ROOT = "/app/media"
"""The API's MediaStorage__RootPath in the bundle: media, and chunked imports staged under imports/."""
API_TEMP = "/var/tmp/tempo"
"""The API's temp folder (ASPNETCORE_TEMP, TMPDIR) on the api_uploads disk volume: bodies are buffered and
imports unzipped whole there."""
