"""Target registry: each target turns the profile into the files of one concern."""

from __future__ import annotations

from tempo_gen.bundle.files import Bundle
from tempo_gen.targets import compose, nginx, tempo_images, traefik
from tempo_gen.targets.base import TargetInput
from tempo_gen.targets.host import backup_units, firewall, monitoring

TARGETS = (compose, tempo_images, nginx, traefik, firewall, monitoring, backup_units)


def bundle_for(target_input: TargetInput) -> Bundle:
    return Bundle([file for target in TARGETS for file in target.files_for(target_input)])
