"""Shared model base and the constrained value types profiles are made of.

Every string that ends up inside a rendered config (nginx, Compose, nftables)
passes one of these validators first, so no profile value can smuggle in a
directive separator, a quote or a newline.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


class StrictModel(BaseModel):
    """Unknown keys are errors and a loaded profile never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)


Violation = tuple[tuple[str | int, ...], str]
"""A broken cross-field rule: the field it is reported on (relative to the model that found it), and why."""


class RuleViolations(ValueError):
    """Several cross-field problems at once, each with its own field path."""

    def __init__(self, violations: list[Violation]):
        self.violations = violations
        super().__init__("; ".join(message for _, message in violations))


_SLUG = re.compile(r"^[a-z][a-z0-9-]{0,38}[a-z0-9]$")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_IMAGE = re.compile(
    r"^(?P<name>[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)
_ORIGIN = re.compile(r"(?P<scheme>https?)://(?P<host>[a-z0-9.-]+|\[[0-9a-f:.]+\])(?::(?P<port>[0-9]{1,5}))?")
_URL = re.compile(
    r"(?P<scheme>https?)://(?P<host>[a-z0-9.-]+|\[[0-9a-f:.]+\])(?::(?P<port>[0-9]{1,5}))?"
    r"(?P<path>/[A-Za-z0-9._~%/-]*)?"
)
_SIZE = re.compile(r"^[1-9][0-9]*[kmg]$")
_SAFE_TEXT = re.compile(r"^[\x20-\x7e]*$")
_ABS_PATH = re.compile(r"^(/[A-Za-z0-9._@+-]+)+$")
_EMAIL = re.compile(r"^[A-Za-z0-9._%+-]{1,64}@(?P<domain>[^@]+)$")
_VERSION_NUMBER = re.compile(r"^[0-9]{1,3}\.[0-9]{1,3}(\.[0-9]{1,3})?$")
_CSP_SOURCE = re.compile(
    r"^(?:'(?:self|none|unsafe-inline|unsafe-eval|unsafe-hashes|strict-dynamic|wasm-unsafe-eval|report-sample)'"
    r"|'(?:sha256|sha384|sha512)-[A-Za-z0-9+/]+={0,2}'"
    r"|[a-z][a-z0-9+.-]*:"
    r"|(?:https?://)?(?:\*\.)?[a-z0-9-]+(?:\.[a-z0-9-]+)*(?::(?:[0-9]{1,5}|\*))?(?:/[A-Za-z0-9._~%/-]*)?)$"
)
PLACEHOLDER_SECRET = "CHANGE_THIS_IN_PRODUCTION_USE_ENVIRONMENT_VARIABLE"
# C0, DEL, C1 (NEL included) and the Unicode line and paragraph separators: every one of them
# ends a line for some parser of the outputs (YAML, nginx, shell, nft), so none reaches a file.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def control_character(text: str) -> str | None:
    """The first control character in `text`, escaped for a message, or None."""
    found = _CONTROL.search(text)
    return None if found is None else ascii(found[0])[1:-1]


def _slug(value: str) -> str:
    if not _SLUG.fullmatch(value):
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
        or not all(_LABEL.fullmatch(label) for label in labels)
        or labels[-1].isdigit()
    ):
        raise ValueError(
            f"{value!r} is not a valid domain name: use lowercase DNS labels separated by dots "
            "(e.g. tempo.example.com); no wildcards, spaces, ports or paths"
        )
    return value


def _image(value: str) -> str:
    if not _IMAGE.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid image reference: expected registry/name:tag@sha256:<64 hex digits>")
    return value


def _origin(value: str) -> str:
    # Tempo splits CORS__AllowedOrigins on commas: an origin is exactly scheme://host[:port].
    if "*" in value:
        raise ValueError(f"{value!r}: wildcard CORS origins are not allowed; list each trusted origin")
    match = _ORIGIN.fullmatch(value)
    if not match or (match["port"] and not 1 <= int(match["port"]) <= 65535):
        raise ValueError(f"{value!r} is not an origin: expected scheme://host[:port], e.g. https://tempo.example.com")
    _check_host(value, match["host"])
    return value


def _domain_or_local(host: str) -> None:
    if host == "localhost":
        return
    try:
        ipaddress.ip_address(host)
    except ValueError:
        _domain(host)


IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _host_address(value: IpAddress) -> IpAddress:
    # A zone index (fe80::1%eth0) may hold any text but '%' and '/': nginx would read it unquoted.
    if isinstance(value, ipaddress.IPv6Address) and value.scope_id is not None:
        raise ValueError(f"{value}: a zone index (%...) is not allowed here; give the address alone")
    return value


def _check_host(value: str, host: str) -> None:
    """The host of an origin or URL: a bracketed IPv6 address, or a domain name (or local name)."""
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ValueError(f"{value!r}: {host} is not an IPv6 address") from None
    else:
        _domain_or_local(host)


def _cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a valid CIDR network ({exc})") from None


def _url(value: str) -> str:
    # Rendered into YAML and shell words: only the characters a plain URL without query or fragment needs.
    match = _URL.fullmatch(value)
    if not match or (match["port"] and not 1 <= int(match["port"]) <= 65535):
        raise ValueError(
            f"{value!r} is not a URL tempo-gen accepts: expected https://host[:port]/path, e.g. "
            "https://acme-staging-v02.api.letsencrypt.org/directory (no query, spaces or quotes)"
        )
    _check_host(value, match["host"])
    return value


def _size(value: str) -> str:
    if not _SIZE.fullmatch(value):
        raise ValueError(f"{value!r} is not a size: expected a whole number with k, m or g, e.g. 512m")
    return value


def _safe_text(value: str) -> str:
    if not _SAFE_TEXT.fullmatch(value) or any(c in value for c in "\"'`\\;{}$"):
        raise ValueError(
            f"{value!r} contains a character that is not allowed here "
            "(quotes, backslash, ';', braces, '$' or a control character)"
        )
    return value


def _abs_path(value: str) -> str:
    if not _ABS_PATH.fullmatch(value) or "/../" in f"{value}/" or "/./" in f"{value}/":
        raise ValueError(
            f"{value!r} is not a usable absolute path: start with '/', use letters, digits and . _ - @ +, "
            "no spaces, quotes or '..'"
        )
    return value


def _email(value: str) -> str:
    match = _EMAIL.fullmatch(value)
    if not match:
        raise ValueError(f"{value!r} is not an e-mail address such as admin@example.com")
    _domain(match["domain"])
    return value


def _version_number(value: str) -> str:
    if not _VERSION_NUMBER.fullmatch(value):
        raise ValueError(f"{value!r} is not a version number: expected MAJOR.MINOR or MAJOR.MINOR.PATCH, e.g. 1.22")
    return value


def _header_value(value: str) -> str:
    # Rendered inside a double-quoted nginx string: a quote, backslash or `$`
    # would end the string or expand a variable; braces and newlines could open
    # new directives. Single quotes and `;` are fine there (CSP needs both).
    if not value or value != value.strip() or not _SAFE_TEXT.fullmatch(value) or any(c in value for c in '"\\`${}'):
        raise ValueError(
            f"{value!r} is not a usable header value: printable ASCII without double quotes, backslash, "
            "backtick, '$', braces, control characters or surrounding spaces"
        )
    return value


def _csp_source(value: str) -> str:
    if not _CSP_SOURCE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a CSP source: use a host (https://*.example.com), a scheme (data:) "
            "or a quoted keyword ('self')"
        )
    return value


def version_tuple(value: str) -> tuple[int, ...]:
    """(1, 25, 1) for "1.25.1": versions compare as tuples."""
    return tuple(int(part) for part in value.split("."))


Slug = Annotated[str, AfterValidator(_slug)]
Domain = Annotated[str, AfterValidator(_domain)]
ImageRef = Annotated[str, AfterValidator(_image)]
Origin = Annotated[str, AfterValidator(_origin)]
Cidr = Annotated[str, AfterValidator(_cidr)]
HostAddress = Annotated[IpAddress, AfterValidator(_host_address)]
Url = Annotated[str, AfterValidator(_url)]
Size = Annotated[str, AfterValidator(_size)]
SafeText = Annotated[str, AfterValidator(_safe_text)]
AbsPath = Annotated[str, AfterValidator(_abs_path)]
Email = Annotated[str, AfterValidator(_email)]
VersionNumber = Annotated[str, AfterValidator(_version_number)]
HeaderValue = Annotated[str, AfterValidator(_header_value)]
CspSource = Annotated[str, AfterValidator(_csp_source)]
Port = Annotated[int, Field(ge=1, le=65535)]
Uid = Annotated[int, Field(ge=1, le=2**31 - 1, description="A non-root numeric id (0 is refused).")]


def image_parts(ref: str) -> tuple[str, str | None, str | None]:
    """Split an image reference into (name, tag, digest)."""
    match = _IMAGE.fullmatch(ref)
    assert match, ref  # references are validated before they get here
    return match["name"], match["tag"], match["digest"]


def size_bytes(size: str) -> int:
    """Bytes in a Size such as 512m."""
    return int(size[:-1]) << 10 * ("kmg".index(size[-1]) + 1)
