"""Helpers of test_fuzz_structure: profile fields, hostile strings, and the structure of a rendered bundle.

Self-contained on purpose (it only imports tempo_gen and third-party parsers), so it can move
with the other test helpers. The structure of a file is what its real parser sees, with the
values left out: YAML key paths, nginx directive names and nesting (crossplane), nftables
statement shapes, shell token kinds, and the line layout every file shares (header comment,
line count).
"""

from __future__ import annotations

import copy
import functools
import ipaddress
import json
import re
import shlex
import tempfile
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import crossplane
import yaml
from hypothesis import strategies as st
from pydantic import BaseModel

from support.project import REPO
from tempo_gen.bundle.files import RenderedFile
from tempo_gen.bundle.pipeline import render_bundle
from tempo_gen.errors import TempoGenError
from tempo_gen.models.profile import Profile
from tempo_gen.profile.loader import LoadedProfile, load_profile
from tempo_gen.profile.source import FieldPath, dotted

Structure = dict[str, object]

# ---------------------------------------------------------------------------------------------
# Every string-typed leaf of the profile model.

_STRING_LEAVES: tuple[type, ...] = (str, ipaddress.IPv4Address, ipaddress.IPv6Address)


def _members(annotation: Any) -> list[Any]:
    """The types an annotation stands for: Annotated and unions unwrapped, None dropped."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _members(typing.get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:
        return [m for arg in typing.get_args(annotation) for m in _members(arg)]
    if annotation is type(None):
        return []
    return [annotation]


def _is_string_leaf(annotation: Any) -> bool:
    if typing.get_origin(annotation) is typing.Literal:
        return all(isinstance(arg, str) for arg in typing.get_args(annotation))
    return isinstance(annotation, type) and issubclass(annotation, _STRING_LEAVES)


def string_field_paths(model: type[BaseModel] = Profile, prefix: FieldPath = ()) -> list[FieldPath]:
    """Paths of every string-valued field (lists by their first item), found from the annotations."""
    paths: list[FieldPath] = []
    for name, info in model.model_fields.items():
        paths += _paths_of(info.annotation, prefix + (name,))
    return paths


def _paths_of(annotation: Any, path: FieldPath) -> list[FieldPath]:
    found: list[FieldPath] = []
    members = _members(annotation)
    if any(_is_string_leaf(m) for m in members):
        found.append(path)
    for member in members:
        if typing.get_origin(member) is list:
            found += _paths_of(typing.get_args(member)[0], path + (0,))
        elif isinstance(member, type) and issubclass(member, BaseModel):
            found += string_field_paths(member, path)
    return list(dict.fromkeys(found))


# ---------------------------------------------------------------------------------------------
# A valid profile for each field, with a valid value in that field (the baseline).


@dataclass(frozen=True)
class FieldCase:
    """One field under test: the base profile, what to add so the field is rendered, and its valid value."""

    base: str
    path: FieldPath
    valid: str
    overlay: Mapping[str, Any]

    @property
    def id(self) -> str:
        return f"{self.base}:{dotted(self.path)}"


def _nest(path: FieldPath, value: Any) -> Any:
    """{'a': {'b': [value]}} for ('a', 'b', 0): the overlay that gives one field a value."""
    for part in reversed(path):
        value = [value] if isinstance(part, int) else {part: value}
    return value


# Fields that must be set (or need a sibling set) before they reach any output.
# A two-node cluster around a fuzzed field of its first node (base profile: swarm).
_CLUSTER: dict[str, Any] = {
    "deploy": {
        "nodes": [
            {"hostname": "db1", "address": "192.0.2.11", "roles": ["postgres"]},
            {"hostname": "web1", "address": "192.0.2.12", "roles": ["edge"]},
        ]
    },
    "proxy": {"tls": {"certificate": {"source": "files", "cert_file": "/etc/t/c.pem", "key_file": "/etc/t/k.pem"}}},
}
_VALID: dict[str, tuple[str, Mapping[str, Any]]] = {
    "extends": ("base.yaml", {}),
    "name": ("example", {}),
    "domain": ("tempo.example.com", {}),
    "environment": ("production", {}),
    "deploy.mode": ("compose", {}),
    "deploy.endpoint_mode": ("vip", {}),
    "tempo.version": ("2.10.1", {}),
    "tempo.images.api": ("ghcr.io/trevordavies095/tempo/api:v2.10.1", {}),
    "tempo.images.frontend": ("ghcr.io/trevordavies095/tempo/frontend:v2.10.1", {}),
    "tempo.images.postgres": ("postgres:16-alpine", {}),
    "tempo.jwt.issuer": ("Tempo", {}),
    "tempo.jwt.audience": ("Tempo", {}),
    "tempo.cors_origins.0": ("https://app.example.com", {}),
    "tempo.cookie_domain": ("example.com", {}),
    "tempo.carto_api_key": ("carto-key_0123.abc", {}),
    "tempo.logging_profile": ("standard", {}),
    "containers.restart": ("unless-stopped", {}),
    "containers.limits.postgres.memory": ("1g", {"containers": {"limits": {"postgres": {"cpus": 1.0, "pids": 200}}}}),
    "containers.limits.api.memory": ("1g", {"containers": {"limits": {"api": {"cpus": 1.0, "pids": 200}}}}),
    "containers.limits.frontend.memory": ("512m", {"containers": {"limits": {"frontend": {"cpus": 0.5, "pids": 100}}}}),
    "containers.limits.proxy.memory": ("256m", {"containers": {"limits": {"proxy": {"cpus": 0.5, "pids": 100}}}}),
    "containers.logging.max_size": ("10m", {}),
    "proxy.kind": ("nginx", {}),
    "proxy.placement": ("container", {}),
    "proxy.publish_addresses.0": ("203.0.113.10", {}),
    "proxy.image": ("nginxinc/nginx-unprivileged:1.28-alpine", {}),
    "proxy.nginx_version": ("1.28", {}),
    "proxy.openssl_version": ("3.0", {}),
    "proxy.tls.profile": ("intermediate", {}),
    "proxy.tls.certificate.source": ("acme", {}),
    "proxy.tls.certificate.cert_file": (
        "/etc/ssl/tempo/fullchain.pem",
        {"proxy": {"tls": {"certificate": {"source": "files", "key_file": "/etc/ssl/tempo/privkey.pem"}}}},
    ),
    "proxy.tls.certificate.key_file": (
        "/etc/ssl/tempo/privkey.pem",
        {"proxy": {"tls": {"certificate": {"source": "files", "cert_file": "/etc/ssl/tempo/fullchain.pem"}}}},
    ),
    "proxy.tls.certificate.acme_webroot": ("/var/www/_letsencrypt", {}),
    "proxy.tls.certificate.acme_email": ("admin@example.com", {}),
    "proxy.tls.certificate.acme_directory": ("https://acme-staging-v02.api.letsencrypt.org/directory", {}),
    "proxy.tls.certificate.acme_ca_bundle": ("/etc/ssl/private-ca.pem", {}),
    "proxy.tls.ocsp_resolvers.0": ("192.0.2.53", {"proxy": {"tls": {"ocsp_stapling": True}}}),
    "proxy.headers.x_xss_protection": ("0", {}),
    "proxy.headers.frame_options": ("SAMEORIGIN", {}),
    "proxy.headers.referrer_policy": ("strict-origin-when-cross-origin", {}),
    "proxy.headers.permissions_policy": ("camera=(), microphone=()", {}),
    "proxy.headers.csp.map_sources.0": ("https://*.tile.openstreetmap.org", {}),
    "proxy.headers.csp.extra_sources.0.directive": (
        "connect-src",
        {"proxy": {"headers": {"csp": {"extra_sources": [{"sources": ["https://example.org"]}]}}}},
    ),
    "proxy.headers.csp.extra_sources.0.sources.0": (
        "https://example.org",
        {"proxy": {"headers": {"csp": {"extra_sources": [{"directive": "connect-src"}]}}}},
    ),
    "proxy.headers.csp.override": ("default-src 'self'; img-src 'self' data:", {}),
    "secrets.dir": ("/srv/tempo-secrets", {}),
    "deploy.nodes.0.hostname": ("db1.example.net", _CLUSTER),
    "deploy.nodes.0.docker_host": ("ssh://admin@db1.example.net", _CLUSTER),
    "deploy.nodes.0.address": ("192.0.2.11", _CLUSTER),
    "deploy.nodes.0.roles.0": ("postgres", _CLUSTER),
    "firewall.admin_cidrs.0": ("198.51.100.0/24", {}),
    "firewall.vpn.interface": ("wg0", {}),
    "firewall.web_cidrs.0": ("192.0.2.0/24", {}),
    "firewall.external_interfaces.0": ("eth0", {}),
    "firewall.ssh_rate": ("10/minute", {}),
    "firewall.log_rate": ("10/minute", {}),
    "monitoring.access_log.dir": ("/srv/tempo-logs", {}),
    "monitoring.access_log.max_size": ("100m", {}),
    "monitoring.alert": ("https://hooks.example.org/tempo", {}),
    "backup.dir": ("/srv/tempo-backups", {}),
    "backup.recipients.0": ("age1az7lh68m9mwua556c0yvyadw8qz6lzawfmlgndy54jysurcgyqqqgqkz08", {}),
    "backup.restic.repository": ("/mnt/offsite/restic", {"backup": {"restic": {"password_file": "/etc/pw"}}}),
    "backup.restic.password_file": ("/etc/pw", {"backup": {"restic": {"repository": "/mnt/offsite/restic"}}}),
    "backup.schedule": ("*-*-* 03:15:00", {}),
    "backup.drill_schedule": ("Sun *-*-* 04:30:00", {}),
}

# Fields whose output differs enough between proxies to be fuzzed on more than one base profile.
_OTHER_BASES: dict[str, tuple[str, ...]] = {
    "name": ("traefik", "host-nginx", "swarm"),
    "domain": ("traefik", "host-nginx", "swarm"),
    "tempo.jwt.issuer": ("swarm",),
    "tempo.carto_api_key": ("swarm",),
    "tempo.cors_origins.0": ("traefik",),
    "proxy.publish_addresses.0": ("traefik", "host-nginx"),
    "proxy.tls.certificate.acme_email": ("traefik",),
    "proxy.tls.certificate.acme_directory": ("traefik", "host-nginx"),
    "proxy.tls.certificate.acme_ca_bundle": ("traefik", "host-nginx"),
    "proxy.tls.certificate.cert_file": ("traefik", "host-nginx"),
    "proxy.headers.permissions_policy": ("traefik",),
    "proxy.headers.csp.map_sources.0": ("traefik",),
    "proxy.headers.csp.override": ("traefik",),
    "deploy.endpoint_mode": ("swarm",),
    "deploy.nodes.0.hostname": ("swarm",),
    "deploy.nodes.0.docker_host": ("swarm",),
    "deploy.nodes.0.address": ("swarm",),
    "deploy.nodes.0.roles.0": ("swarm",),
    "firewall.external_interfaces.0": ("host-nginx",),
    "monitoring.access_log.dir": ("traefik", "host-nginx"),
}
_SWARM_ONLY = {
    "deploy.endpoint_mode",
    *(f"deploy.nodes.0.{key}" for key in ("hostname", "docker_host", "address", "roles.0")),
}


def field_cases() -> list[FieldCase]:
    """One case per string field and base profile. A field without a valid value here fails the suite."""
    cases = []
    for path in string_field_paths():
        key = dotted(path)
        valid, overlay = _VALID[key]
        bases = () if key in _SWARM_ONLY else ("example",)
        for base in bases + _OTHER_BASES.get(key, ()):
            if key == "proxy.publish_addresses.0" and base == "host-nginx":
                valid = "192.0.2.10"
            cases.append(FieldCase(base, path, valid, overlay))
    return cases


def base_profile(base: str) -> dict[str, Any]:
    data = yaml.safe_load((REPO / "profiles" / f"{base}.yaml").read_text())
    assert isinstance(data, dict)
    data.setdefault("environment", "production")
    data.setdefault("tempo", {})["allow_unpinned"] = True
    return data


def merge_overlay(base: dict[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """Like the loader's deep_merge, but a one-item list of mappings reaches into the base list's first item:
    the fuzzer addresses "the first route" or "the first extra CSP source" this way."""
    merged = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = merge_overlay(merged[key], value)
        elif isinstance(value, list) and isinstance(merged.get(key), list) and value and isinstance(value[0], dict):
            merged[key] = [merge_overlay(merged[key][0] if merged[key] else {}, value[0]), *merged[key][1:]]
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def profile_with(case: FieldCase, value: str) -> dict[str, Any]:
    """The case's base profile with `value` in the field under test (lists: their first item)."""
    data = merge_overlay(base_profile(case.base), case.overlay)
    data = merge_overlay(data, _nest(case.path, "__placeholder__"))
    _set(data, case.path, value)
    return data


def _set(data: Any, path: FieldPath, value: str) -> None:
    for part in path[:-1]:
        data = data[part]
    last = path[-1]
    if isinstance(last, int):
        data[last] = value
    else:
        data[last] = value


def dump(data: Mapping[str, Any]) -> str:
    text = yaml.safe_dump(dict(data), allow_unicode=False, sort_keys=False, width=2**20)
    assert yaml.safe_load(text) == data, "yaml.safe_dump must round-trip the profile"
    return text


def write_project(root: Path) -> None:
    """An empty project: profiles/ with the file `extends:` cases point at."""
    (root / "profiles").mkdir(parents=True, exist_ok=True)
    (root / "profiles" / "base.yaml").write_text("environment: production\n")


# ---------------------------------------------------------------------------------------------
# Hostile strings.

HOSTILE_CHARS = (
    "\n",
    "\r",
    "\x85",
    "\u2028",
    "\u2029",
    "\x00",
    "\t",
    "\x0b",
    "\x0c",
    "\x1b",
    "\x7f",
    "'",
    '"',
    "`",
    "\\",
    "$",
    "{",
    "}",
    ";",
    "#",
    "*",
    ",",
    " ",
    ":",
    "|",
    "&",
    "<",
    ">",
    "(",
    ")",
    "[",
    "]",
    "=",
    "%",
    "!",
    "?",
    "~",
    "@",
    "/",
    "-",
    ".",
    "\u00a0",
    "\ufeff",
    "\u202e",
    "\u00e9",
    "\u0131",
    "\U0001f600",
)
HOSTILE_FRAGMENTS = (
    "${X}",
    "${HOME}",
    "$$",
    "$(id)",
    "`id`",
    "\r\n",
    "\n}\nserver {\n",
    "; return 200 x;",
    "\n- injected",
    "\nkey: value",
    "': '",
    '": "',
    "{{ x }}",
    "{% raw %}",
    "*/",
    "-->",
    "<!--",
    " # ",
    "\\n",
    "\\\n",
    "&&",
    "||",
    ";;",
    "0.0.0.0/0",
    "::/0",
    "..",
    "../..",
    "/etc/passwd",
    "accept",
    "drop;",
    "include /etc/nginx/x.conf;",
    "@",
    "%00",
    "\u0130",
    "\u212a",
)

hostile_char = st.sampled_from(HOSTILE_CHARS)
hostile_text: st.SearchStrategy[str] = st.one_of(
    st.lists(
        st.one_of(hostile_char, st.sampled_from(HOSTILE_FRAGMENTS), st.text(max_size=6)),
        min_size=1,
        max_size=10,
    ).map("".join),
    st.text(alphabet=st.one_of(hostile_char, st.characters(codec="utf-8")), min_size=1, max_size=40),
    st.tuples(st.sampled_from(HOSTILE_CHARS + HOSTILE_FRAGMENTS + ("a",)), st.integers(100, 5000)).map(
        lambda pair: pair[0] * pair[1]
    ),
)


def hostile_variant(valid: str) -> st.SearchStrategy[str]:
    """The valid value with one hostile character (or fragment) prepended, appended or inserted."""
    inserted = st.one_of(hostile_char, st.sampled_from(HOSTILE_FRAGMENTS))
    return st.tuples(inserted, st.integers(0, len(valid)), st.sampled_from(("insert", "replace"))).map(
        lambda t: valid[: t[1]] + t[0] + valid[t[1] + (t[2] == "replace") :]
    )


def hostile_for(valid: str) -> st.SearchStrategy[str]:
    return st.one_of(hostile_variant(valid), hostile_text)


def dotenv_quoted(value: str) -> str:
    """VALUE in double quotes as python-dotenv reads it back (its escapes: \\\\ \\" \\n \\r \\t)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


# ---------------------------------------------------------------------------------------------
# Render and structure.


def load_and_render(profile_path: Path, root: Path) -> tuple[LoadedProfile, list[RenderedFile]]:
    loaded = load_profile(profile_path, root)
    return loaded, render_bundle(loaded, root, root / "out" / loaded.profile.name)


class Normalizer:
    """Replaces the deployment's name and domain (which name files, keys and sets) by placeholders."""

    def __init__(self, name: str, domain: str):
        self.pairs = sorted(((domain, "<domain>"), (name, "<name>")), key=lambda p: -len(p[0]))

    def __call__(self, text: str) -> str:
        for value, placeholder in self.pairs:
            text = text.replace(value, placeholder)
        return text


def structure(loaded: LoadedProfile, files: list[RenderedFile]) -> Structure:
    """What every parser of the outputs sees, minus the values: equal for any two renders of one shape."""
    name, domain = loaded.profile.name, loaded.profile.domain
    norm = Normalizer(name, domain)
    return {norm(file.path.as_posix()): _cached_structure(file.path, file.content, name, domain) for file in files}


@functools.lru_cache(maxsize=8192)
def _cached_structure(path: PurePosixPath, text: str, name: str, domain: str) -> dict[str, object]:
    """A hostile value reaches a few files: the others are parsed once, not once per example."""
    return file_structure(path, text, Normalizer(name, domain))


def file_structure(path: PurePosixPath, text: str, norm: Normalizer) -> dict[str, object]:
    lines = text.split("\n")
    shape: dict[str, object] = {"header": header_lines(lines)}
    name = path.name
    if name.endswith((".yaml", ".yml")):
        # What YAML parsers see: long double-quoted values are deliberately folded over lines.
        shape["yaml"] = yaml_key_paths(text, norm)
        return shape
    shape["lines"] = len(lines)
    shape["splitlines"] = len(text.splitlines())
    words = [line.split() for line in lines if line.strip() and _not_comment(line)]
    if name == "logrotate":
        # The first line names the log (a profile value), then one block of directives.
        shape["logrotate_head"] = [len(words[0]), words[0][-1]]
        words = words[1:]
    shape["first_words"] = [norm(line[0]) for line in words]
    if name.endswith((".service", ".timer")):
        # systemd splits a line at its first `=`: the key is the structure, the rest one value.
        shape["first_words"] = [norm(line.split("=", 1)[0]) for line in lines if line.strip() and _not_comment(line)]
    if name.endswith(".json"):
        shape["json"] = _key_paths(json.loads(text), (), norm)
    elif name.endswith(".conf") and "nginx" in path.parts:
        shape["nginx"] = nginx_shape(text)
    elif name == "nftables.conf":
        shape["nft"] = nft_shape(text)
    elif name.endswith(".sh"):
        shape["sh"] = shell_shape(text)
    elif name.endswith(".md"):
        shape["html_comments"] = html_comments(text)
    return shape


_FENCED = re.compile(r"^```.*?^```$", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"`[^`\n]*`")


def html_comments(text: str) -> list[tuple[int, int]]:
    """(line it opens on, line it closes on) of each HTML comment, as Markdown reads them:
    a `-->` outside a comment is text, a `<!--` hides everything up to the next `-->`; inside a
    code span or a fenced block both are literal text (values are rendered in code spans)."""
    text = _FENCED.sub(lambda m: "\n" * m[0].count("\n"), text)
    text = _CODE_SPAN.sub("``", text)
    spans = []
    position = 0
    while (start := text.find("<!--", position)) >= 0:
        end = text.find("-->", start + 4)
        close = len(text) if end < 0 else end
        spans.append((text.count("\n", 0, start), text.count("\n", 0, close)))
        position = close + 3
    return spans


def _not_comment(line: str) -> bool:
    return not line.lstrip().startswith(("#", "//"))


def header_lines(lines: list[str]) -> int:
    """Lines of the leading comment block (after a shebang or an HTML comment opener)."""
    count = 0
    for line in lines:
        if line.startswith("#") or (count == 0 and line == "<!--"):
            count += 1
        else:
            break
    return count


def _key_paths(value: object, prefix: tuple[str, ...], norm: Normalizer) -> list[tuple[str, ...]]:
    paths = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            paths += _key_paths(child, prefix + (norm(str(key)),), norm)
    elif isinstance(value, list):
        for i, child in enumerate(value):
            paths += _key_paths(child, prefix + (f"[{i}]",), norm)
    return paths


_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""yaml.safe_load's loader, in C when PyYAML has it."""


def yaml_key_paths(text: str, norm: Normalizer) -> object:
    try:
        documents = list(yaml.load_all(text, Loader=_SAFE_LOADER))
    except yaml.YAMLError as exc:
        return f"YAML error: {type(exc).__name__}"
    return sorted(path for doc in documents for path in _key_paths(doc, (), norm))


_NGINX_DIR = Path(tempfile.mkdtemp(prefix="fuzz-nginx-"))


def nginx_shape(text: str) -> object:
    """Directive names and nesting as crossplane (nginxinc's parser) reads the file alone."""
    file = _NGINX_DIR / "file.conf"
    file.write_text(text)
    payload = crossplane.parse(str(file), single=True, check_ctx=False, check_args=False, comments=False)
    config = payload["config"][0]
    if config["errors"]:
        return [f"error: {error['error']}" for error in config["errors"]]
    return _directives(config["parsed"])


def _directives(parsed: list[dict[str, Any]]) -> list[object]:
    shape: list[object] = []
    for item in parsed:
        shape.append((item["directive"], len(item["args"]) if item["directive"] in _FIXED_ARITY else None))
        if "block" in item:
            shape.append(_directives(item["block"]))
    return shape


# Directives whose argument count never depends on a value: a split value would show as one more.
_FIXED_ARITY = frozenset(
    {"add_header", "proxy_set_header", "ssl_certificate", "ssl_certificate_key", "root", "alias", "server_name"}
)


_NFT_TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|[{};,]|[^\s{};,"#]+|#.*|\S')


def nft_tokens(line: str) -> list[str]:
    """Tokens of one nftables line; a `#` outside a string starts a comment, dropped here."""
    tokens = []
    for token in _NFT_TOKEN.findall(line):
        if token.startswith("#"):
            break
        tokens.append(token)
    return tokens


def nft_shape(text: str) -> list[object]:
    """(enclosing blocks, leading keyword, token kinds) of every statement."""
    shape: list[object] = []
    blocks: list[str] = []
    for line in text.split("\n"):
        tokens = nft_tokens(line)
        if not tokens:
            continue
        kinds = tuple(t if t in "{};," else "S" if t.startswith('"') else "W" for t in tokens)
        shape.append((tuple(blocks), tokens[0], kinds))
        for i, token in enumerate(tokens):
            if token == "{":
                blocks.append(" ".join(tokens[max(0, i - 2) : i]) if i else "{")
            elif token == "}" and blocks:
                blocks.pop()
    return shape


def shell_shape(text: str) -> object:
    """Token kinds of the whole script as shlex (punctuation_chars) reads it, comments dropped:
    operators verbatim, every word as W, plus the first word of each command."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars="();<>|&\n")
    lexer.whitespace = " \t"
    lexer.whitespace_split = True
    tokens: list[str] = []
    try:
        tokens = list(_tokens(lexer))
    except ValueError as exc:
        return f"shlex error: {exc}"
    shape: list[str] = []
    command_start = True
    for token in tokens:
        if set(token) <= set("();<>|&\n"):
            shape.append(token)
            command_start = True
        else:
            shape.append(token if command_start and "=" not in token else "W")
            command_start = False
    return shape


def _tokens(lexer: shlex.shlex) -> Iterator[str]:
    while (token := lexer.get_token()) != lexer.eof:
        assert token is not None
        yield token


def assert_same_structure(baseline: Structure, got: Structure, value: str) -> None:
    assert sorted(got) == sorted(baseline), f"files differ for {value!r}"
    for path, shape in baseline.items():
        for aspect, expected in shape.items():  # type: ignore[attr-defined]
            actual = got[path][aspect]  # type: ignore[index]
            assert actual == expected, f"{path}: {aspect} changed for {value!r}\n{expected!r}\n!=\n{actual!r}"


def render_errors_are_refusals(exc: BaseException) -> bool:
    return isinstance(exc, TempoGenError) and exc.exit_code == 2
