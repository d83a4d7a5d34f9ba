"""Shared model base and the constrained value types profiles are made of.

Every string that ends up inside a rendered config (nginx, Compose, nftables)
passes one of these validators first, so no profile value can smuggle in a
directive separator, a quote or a newline.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


class StrictModel(BaseModel):
    """Unknown keys are errors and a loaded profile never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


_SLUG = re.compile(r"^[a-z][a-z0-9-]{0,38}[a-z0-9]$")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_IMAGE = re.compile(
    r"^(?P<name>[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)
_SIZE = re.compile(r"^[1-9][0-9]*[kmg]$")
_SAFE_TEXT = re.compile(r"^[\x20-\x7e]*$")
PLACEHOLDER_SECRET = "CHANGE_THIS_IN_PRODUCTION_USE_ENVIRONMENT_VARIABLE"


def _slug(value: str) -> str:
    if not _SLUG.match(value):
        raise ValueError(
            f"{value!r} is not a valid name: use 2-40 lowercase letters, digits and dashes, starting with a letter"
        )
    return value


def _domain(value: str) -> str:
    labels = value.split(".")
    if (
        value != value.lower()
        or len(value) > 253
        or len(labels) < 2
        or not all(_LABEL.match(label) for label in labels)
        or labels[-1].isdigit()
    ):
        raise ValueError(
            f"{value!r} is not a valid domain name: use lowercase DNS labels separated by dots "
            "(e.g. tempo.example.com); no wildcards, spaces, ports or paths"
        )
    return value


def _image(value: str) -> str:
    if not _IMAGE.match(value):
        raise ValueError(
            f"{value!r} is not a valid image reference: expected registry/name:tag@sha256:<64 hex digits>"
        )
    return value


def _origin(value: str) -> str:
    if "*" in value:
        raise ValueError(f"{value!r}: wildcard CORS origins are not allowed; list each trusted origin")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(f"{value!r} is not an origin: expected scheme://host[:port], e.g. https://tempo.example.com")
    _domain_or_local(parts.hostname)
    return value.rstrip("/")


def _domain_or_local(host: str) -> None:
    if host == "localhost":
        return
    try:
        ipaddress.ip_address(host)
    except ValueError:
        _domain(host)


def _cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a valid CIDR network ({exc})") from None


def _size(value: str) -> str:
    if not _SIZE.match(value):
        raise ValueError(f"{value!r} is not a size: expected a whole number with k, m or g, e.g. 512m")
    return value


def _safe_text(value: str) -> str:
    if not _SAFE_TEXT.match(value) or any(c in value for c in "\"'`\\;{}$"):
        raise ValueError(
            f"{value!r} contains a character that is not allowed here (quotes, backslash, ';', braces, '$' or a control character)"
        )
    return value


Slug = Annotated[str, AfterValidator(_slug)]
Domain = Annotated[str, AfterValidator(_domain)]
ImageRef = Annotated[str, AfterValidator(_image)]
Origin = Annotated[str, AfterValidator(_origin)]
Cidr = Annotated[str, AfterValidator(_cidr)]
Size = Annotated[str, AfterValidator(_size)]
SafeText = Annotated[str, AfterValidator(_safe_text)]
Port = Annotated[int, Field(ge=1, le=65535)]
Uid = Annotated[int, Field(ge=1, le=2**31 - 1, description="A non-root numeric id (0 is refused).")]


def image_parts(ref: str) -> tuple[str, str | None, str | None]:
    """Split an image reference into (name, tag, digest)."""
    match = _IMAGE.match(ref)
    assert match, ref  # references are validated before they get here
    return match["name"], match["tag"], match["digest"]


def size_bytes(size: str) -> int:
    """Bytes in a Size such as 512m."""
    return int(size[:-1]) * 1024 ** "kmg".index(size[-1]) * 1024
