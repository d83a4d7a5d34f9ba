"""The rendered bundle: relative POSIX paths mapped to text, checked before anything is written."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

from tempo_gen.errors import RenderError


@dataclass(frozen=True)
class RenderedFile:
    path: PurePosixPath
    content: str
    mode: int = 0o644


class Bundle:
    """Files of one profile's output, each path unique and confined to the output folder."""

    def __init__(self, files: list[RenderedFile]):
        by_path: dict[PurePosixPath, RenderedFile] = {}
        for file in files:
            path = file.path
            if path.is_absolute() or ".." in path.parts or not path.parts:
                raise RenderError(f"refusing to write outside the output folder: {path}")
            if path in by_path:
                raise RenderError(f"two targets render the same file: {path}")
            by_path[path] = file
        self.files = tuple(by_path[p] for p in sorted(by_path))

    def __iter__(self) -> Iterator[RenderedFile]:
        return iter(self.files)

    def get(self, path: str) -> RenderedFile:
        for file in self.files:
            if file.path == PurePosixPath(path):
                return file
        raise KeyError(path)
