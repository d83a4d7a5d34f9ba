"""What restore and backup refuse before they touch a deployment: no engine needed, real age and real files.

The backups here are written the way take.py writes them (crypt.Encryptor, the layout's models), from a
few bytes standing for a dump and a media archive; every hostile variant is then planted on disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from support.project import VALID_PROFILE, RunCli
from tempo_gen.errors import UnsafeFile, UsageError
from tempo_gen.models.profile import Profile
from tempo_gen.ops.backup.crypt import Identity, encrypting
from tempo_gen.ops.backup.layout import CONTENTS, INDEX, PARTIAL, CorruptBackup, Index, Manifest, backup_names
from tempo_gen.ops.backup.restore import check_restorable
from tempo_gen.ops.backup.take import open_backup_folder
from tempo_gen.policy.releases import NEWEST, SUPPORTED
from tempo_gen.profile.loader import load_profile
from tempo_gen.safe_fs import open_dir_beneath

NAME = "20261205T031500Z"
DUMP = b"PGDMP stand-in for a custom-format dump: runner's workouts"
MEDIA = b"media archive bytes " * 100


def _profile(project: Path, backups: Path, recipients: list[str], version: str = NEWEST) -> Profile:
    text = VALID_PROFILE.replace("tempo:\n", f"tempo:\n  version: {version}\n")
    text += f"backup:\n  dir: {backups}\n  recipients: [{', '.join(recipients)}]\n"
    (project / "profiles" / "demo.yaml").write_text(text)
    return load_profile(project / "profiles" / "demo.yaml", project).profile


def write_backup(folder: Path, name: str, recipient: str, version: str = NEWEST, dump: bytes = DUMP) -> None:
    """A complete backup `name` in `folder`, written like take.py writes one."""
    created = datetime(2026, 12, 5, 3, 15, tzinfo=UTC)
    folder.mkdir(mode=0o700, exist_ok=True)
    (folder / name).mkdir(mode=0o700)
    with open_dir_beneath(folder / name) as fd:
        sealed = {}
        for part, data in (("db.dump.age", dump), ("media.tar.age", MEDIA)):
            with encrypting([recipient], fd, part) as encryptor:
                encryptor.write(data)
                sealed[part] = encryptor.close()
        manifest = Manifest(
            created=created,
            kind="manual",
            tempo_version=version,
            last_migration="00021001000000_Release_2_10_1",
            tempo_gen_version="test",
            contents={content: sealed[part].content for part, content in CONTENTS.items()},
        )
        with encrypting([recipient], fd, "manifest.json.age") as encryptor:
            encryptor.write(manifest.model_dump_json().encode())
            sealed["manifest.json.age"] = encryptor.close()
    index = Index(created=created, kind="manual", tempo_version=version, parts={p: s.stored for p, s in sealed.items()})  # type: ignore[misc]
    (folder / name / INDEX).write_text(index.model_dump_json())


@pytest.fixture
def setup(
    project: Path, tmp_path: Path, age_keys: dict[str, tuple[Path, str]]
) -> Iterator[tuple[Profile, Path, Identity]]:
    backups = tmp_path / "backups"
    profile = _profile(project, backups, [age_keys["right"][1]])
    write_backup(backups, NAME, age_keys["right"][1])
    identity = Identity(age_keys["right"][0])
    yield profile, backups, identity
    identity.close()


def test_a_good_backup_passes_every_check(setup: tuple[Profile, Path, Identity]) -> None:
    profile, backups, identity = setup
    manifest = check_restorable(profile, backups, NAME, identity)
    assert manifest.tempo_version == NEWEST and manifest.contents["db.dump"].bytes == len(DUMP)
    assert DUMP not in b"".join(p.read_bytes() for p in (backups / NAME).iterdir()), "no plaintext on disk"


def _flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _symlinked_part(backups: Path, _recipient: str) -> None:
    part = backups / NAME / "db.dump.age"
    elsewhere = backups.parent / "elsewhere.age"
    shutil.move(part, elsewhere)
    part.symlink_to(elsewhere)


def _planted_index(backups: Path, _recipient: str) -> None:
    """A tampered part with an index recomputed to match it: only age's authentication can tell."""
    part = backups / NAME / "media.tar.age"
    _flip(part, part.stat().st_size - 20)
    index = json.loads((backups / NAME / INDEX).read_text())
    index["parts"]["media.tar.age"]["sha256"] = hashlib.sha256(part.read_bytes()).hexdigest()
    (backups / NAME / INDEX).write_text(json.dumps(index))


def _symlinked_index(backups: Path, _recipient: str) -> None:
    (backups / NAME / INDEX).rename(backups.parent / "index.json")
    (backups / NAME / INDEX).symlink_to(backups.parent / "index.json")


def _garbage_index(backups: Path, _recipient: str) -> None:
    (backups / NAME / INDEX).write_text('{"format": 1, "kind": "whatever"}')


def _swapped_manifest(backups: Path, recipient: str) -> None:
    """Another backup's (valid, decryptable) manifest: its digests do not describe these parts."""
    other = backups.parent / "other"
    write_backup(other, NAME, recipient, dump=b"another deployment's dump")
    manifest = json.loads((other / NAME / INDEX).read_text())["parts"]["manifest.json.age"]
    shutil.copy(other / NAME / "manifest.json.age", backups / NAME / "manifest.json.age")
    index = json.loads((backups / NAME / INDEX).read_text())
    index["parts"]["manifest.json.age"] = manifest
    (backups / NAME / INDEX).write_text(json.dumps(index))


Damage = Callable[[Path, str], object]
HOSTILE: dict[str, tuple[Damage, type[Exception], str]] = {
    "truncated part": (
        lambda b, _: _truncate(b / NAME / "db.dump.age"),
        CorruptBackup,
        "db.dump.age: is not what was written",
    ),
    "flipped byte": (
        lambda b, _: _flip(b / NAME / "media.tar.age", 200),
        CorruptBackup,
        "media.tar.age: is not what was written",
    ),
    "symlinked part": (_symlinked_part, CorruptBackup, "a symlink"),
    "planted index": (_planted_index, CorruptBackup, "media.tar.age: does not decrypt"),
    "symlinked index": (_symlinked_index, UnsafeFile, "is a symlink"),
    "garbage index": (_garbage_index, CorruptBackup, "is not a tempo-gen backup index"),
    "swapped manifest": (_swapped_manifest, CorruptBackup, "decrypts to something else than its manifest describes"),
}


@pytest.mark.parametrize("hostile", list(HOSTILE))
def test_a_hostile_backup_is_refused_with_the_file_named(setup: tuple[Profile, Path, Identity], hostile: str) -> None:
    profile, backups, identity = setup
    damage, error, message = HOSTILE[hostile]
    damage(backups, sorted(profile.backup.recipients)[0])
    with pytest.raises(error) as refused:
        check_restorable(profile, backups, NAME, identity)
    assert message in str(refused.value)
    assert isinstance(refused.value, UnsafeFile) and refused.value.exit_code == 2


def test_a_symlinked_or_partial_backup_is_no_backup(setup: tuple[Profile, Path, Identity], tmp_path: Path) -> None:
    profile, backups, identity = setup
    shutil.copytree(backups / NAME, tmp_path / "real")
    (backups / "20270101T000000Z").symlink_to(tmp_path / "real")
    (backups / NAME).rename(backups / (NAME + PARTIAL))
    assert backup_names(backups) == []
    for name in ("20270101T000000Z", NAME, NAME + PARTIAL, "../real"):
        with pytest.raises(UsageError, match="is not a complete backup"):
            check_restorable(profile, backups, name, identity)


def test_a_symlinked_backup_folder_is_refused(setup: tuple[Profile, Path, Identity], tmp_path: Path) -> None:
    profile, backups, _ = setup
    backups.rename(tmp_path / "moved")
    backups.symlink_to(tmp_path / "moved")
    with pytest.raises(UnsafeFile, match="is a symlink"):
        open_backup_folder(profile)


def test_a_wrong_key_is_refused(setup: tuple[Profile, Path, Identity], age_keys: dict[str, tuple[Path, str]]) -> None:
    profile, backups, _ = setup
    wrong = Identity(age_keys["wrong"][0])
    with pytest.raises(UsageError, match="is not a key this backup was encrypted to") as refused:
        check_restorable(profile, backups, NAME, wrong)
    assert "nothing was touched" in str(refused.value)
    wrong.close()


def test_a_key_outside_the_recipients_is_refused(
    project: Path, tmp_path: Path, age_keys: dict[str, tuple[Path, str]]
) -> None:
    """It decrypts this backup, but the safety backup (to the profile's recipients) could not be put back."""
    backups = tmp_path / "backups"
    profile = _profile(project, backups, [age_keys["right"][1]])
    write_backup(backups, NAME, age_keys["wrong"][1])
    wrong = Identity(age_keys["wrong"][0])
    with pytest.raises(UsageError, match=r"is not the key of any of backup\.recipients"):
        check_restorable(profile, backups, NAME, wrong)
    wrong.close()


def test_a_backup_of_a_newer_tempo_is_refused(
    project: Path, tmp_path: Path, age_keys: dict[str, tuple[Path, str]]
) -> None:
    backups = tmp_path / "backups"
    profile = _profile(project, backups, [age_keys["right"][1]], version=SUPPORTED[0])
    write_backup(backups, NAME, age_keys["right"][1], version=NEWEST)
    identity = Identity(age_keys["right"][0])
    with pytest.raises(UsageError, match=f"is from Tempo {NEWEST}, newer than the deployed {SUPPORTED[0]}"):
        check_restorable(profile, backups, NAME, identity)
    identity.close()


def test_an_identity_others_can_read_is_refused(age_keys: dict[str, tuple[Path, str]], tmp_path: Path) -> None:
    key = tmp_path / "shared.key"
    shutil.copy(age_keys["right"][0], key)
    os.chmod(key, 0o644)
    with pytest.raises(UsageError, match="readable by its owner only"):
        Identity(key)


def test_backup_and_restore_refuse_a_profile_without_recipients(
    cli: RunCli, project: Path, age_keys: dict[str, tuple[Path, str]]
) -> None:
    (project / "profiles" / "demo.yaml").write_text(VALID_PROFILE)
    key = age_keys["right"][0]
    profile = str(project / "profiles" / "demo.yaml")
    for args in (("backup", profile), ("restore", profile, NAME, "--identity", str(key))):
        result = cli(*args)
        assert result.exit_code == 2, result.output
        assert "has no backup.recipients" in result.output
