"""`tempo-gen lock`: pin every image a profile uses to the digest its tag points at.

Pins are written as name:tag@sha256:digest, the form Renovate and Dependabot
update, at tempo.images.<service> or proxy.image of the profile file named on the
command line, even when the reference came from a default or an `extends:` base:
that file then states exactly what it deploys (and its api/frontend images stop
following tempo.version: run lock again after changing the version). Nothing is
written unless every image resolves, and each edited file must load again.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from tempo_gen.errors import EditError, Problem, ProfileError, RegistryError, TempoGenError, UsageError
from tempo_gen.models.base import image_parts
from tempo_gen.ops.registry import Registry
from tempo_gen.profile.edit import find, set_scalars
from tempo_gen.profile.loader import LoadedProfile, load_profile
from tempo_gen.profile.source import FieldPath, dotted
from tempo_gen.safe_fs import stage_beside

FIELDS: dict[str, FieldPath] = {
    "api": ("tempo", "images", "api"),
    "frontend": ("tempo", "images", "frontend"),
    "postgres": ("tempo", "images", "postgres"),
    "proxy": ("proxy", "image"),
}
"""Where each service's image reference is written in a profile."""


@dataclass
class _Plan:
    loaded: LoadedProfile
    text: str
    pins: dict[FieldPath, str] = field(default_factory=dict)
    kept: int = 0


def lock(files: list[Path], root: Path, registry: Registry, update: bool = False) -> list[str]:
    """Pin the images of `files`; return the lines to report, or raise ProfileError with nothing written."""
    if not files:
        raise UsageError("no profiles given and none found in profiles/")
    report: list[str] = []
    problems: list[Problem] = []
    plans: list[_Plan] = []
    for path in dict.fromkeys(p.resolve() for p in files):
        try:
            loaded = load_profile(path, root, require_pins=False)
        except ProfileError as exc:
            problems += exc.problems
            continue
        plans.append(_Plan(loaded, path.read_bytes().decode("utf-8")))
    if problems:  # before any network request
        raise ProfileError(problems)
    resolved: dict[tuple[str, str], str | RegistryError] = {}  # each tag asked once, whatever uses it
    for plan in plans:
        for service, ref in plan.loaded.profile.images().items():
            _plan_pin(plan, FIELDS[service], ref, registry, update, resolved, problems, report)
    if problems:
        raise ProfileError(problems)
    _write([plan for plan in plans if plan.pins], root)
    for plan in plans:
        report.extend(f"{plan.loaded.display_path}: {dotted(path)} = {pin}" for path, pin in plan.pins.items())
        summary = f"{len(plan.pins)} pinned" if plan.pins else "nothing to pin; unchanged"
        summary += f", {plan.kept} already pinned and kept"
        report.append(f"{plan.loaded.display_path}: {summary}")
    return report


def _plan_pin(
    plan: _Plan,
    path: FieldPath,
    ref: str,
    registry: Registry,
    update: bool,
    resolved: dict[tuple[str, str], str | RegistryError],
    problems: list[Problem],
    report: list[str],
) -> None:
    display = plan.loaded.display_path
    name, tag, digest = image_parts(ref)
    node = find(plan.text, path)
    line = node.start_mark.line + 1 if node is not None else None
    if digest and not update:
        plan.kept += 1
        return
    if tag is None:  # name@sha256:... alone: nothing to re-resolve
        report.append(f"{display}: {dotted(path)} {ref} has no tag to re-resolve; kept")
        plan.kept += 1
        return
    if node is not None and "$" in str(node.value):
        # The value is interpolated from ${VAR}; pinning here would hard-code the variable's value.
        report.append(f"{display}: {dotted(path)} is set from a variable; pin the image where the variable is defined")
        return
    key = (name, tag)
    if key not in resolved:
        try:
            resolved[key] = registry.digest(name, tag)
        except RegistryError as exc:
            resolved[key] = exc
    if isinstance(resolved[key], RegistryError):
        problems.append(Problem(display, line, dotted(path), f"cannot resolve {name}:{tag}: {resolved[key]}"))
        return
    pin = f"{name}:{tag}@{resolved[key]}"
    if pin == ref:
        plan.kept += 1
    else:
        plan.pins[path] = pin


def _write(plans: list[_Plan], root: Path) -> None:
    """Stage every edited profile beside its original, load it, and only then replace the originals."""
    staged: list[tuple[Path, _Plan]] = []
    try:
        for plan in plans:
            path = plan.loaded.path
            try:
                text = set_scalars(plan.text, plan.pins)
            except EditError as exc:
                raise ProfileError(
                    [Problem(plan.loaded.display_path, None, "", f"cannot write the pins: {exc}")]
                ) from None
            temp = stage_beside(path, "lock-tmp", text.encode("utf-8"))
            staged.append((temp, plan))
            shutil.copymode(path, temp)
            _check(temp, root, plan)
        for temp, plan in staged:
            os.replace(temp, plan.loaded.path)
    finally:
        for temp, _ in staged:
            temp.unlink(missing_ok=True)


def _check(temp: Path, root: Path, plan: _Plan) -> None:
    """The edited profile loads and uses exactly the planned images."""
    display = plan.loaded.display_path
    try:
        images = load_profile(temp, root, require_pins=False).profile.images()
    except ProfileError as exc:
        raise TempoGenError(f"{display}: the pinned profile would not load, so nothing was written:\n{exc}") from None
    expected = {service: plan.pins.get(FIELDS[service], ref) for service, ref in plan.loaded.profile.images().items()}
    if images != expected:
        raise TempoGenError(f"{display}: the pinned profile would use {images}, not {expected}; nothing was written")
