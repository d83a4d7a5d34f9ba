"""The test-support client's pieces that need no deployment: the ZIP writer and
the per-release choice of upload path (the uploads themselves are proven
against the stand-ins in tests/e2e/test_standins.py)."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import pytest
import trustme

from support.tempo_client import Origin, TempoClient, write_zip


@pytest.mark.parametrize("size", [400, 4096, 3 * (1 << 20) + 17, 9 * (1 << 20)])
def test_write_zip_writes_a_valid_zip_of_exactly_the_size(tmp_path: Path, size: int) -> None:
    path = write_zip(tmp_path / "export.zip", size, entry_bytes=4 << 20)
    assert path.stat().st_size == size
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        assert archive.namelist()[0] == "activities.csv"
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_STORED}


def test_write_zip_data_does_not_compress(tmp_path: Path) -> None:
    data = write_zip(tmp_path / "export.zip", 1 << 20).read_bytes()
    assert len(zlib.compress(data)) > 0.99 * len(data)  # a proxy or gzip cannot shrink the upload


def test_write_zip_refuses_a_size_too_small_for_data(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="too small"):
        write_zip(tmp_path / "export.zip", 100)


def test_origin_url_is_what_a_browser_sends() -> None:
    ca = trustme.CA()
    assert Origin("10.0.0.2", 443, "tempo.example", ca).url == "https://tempo.example"
    assert Origin("10.0.0.2", 8443, "tempo.example", ca).url == "https://tempo.example:8443"
    assert Origin("10.0.0.2", 443, "tempo.example", ca=None).url == "http://tempo.example:443"
    assert Origin("10.0.0.2", 80, "tempo.example").url == "http://tempo.example"


def test_releases_before_2_7_need_the_import_port() -> None:
    old = TempoClient("2.6.0", Origin("127.0.0.1", 80, "tempo.test"))
    assert not old.chunked_imports and TempoClient("2.7.0", old.site).chunked_imports
    with pytest.raises(ValueError, match="import_port"):
        old.upload_export(b"PK")
