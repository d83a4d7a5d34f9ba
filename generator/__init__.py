"""tempo-gen: render a hardened deployment bundle for Tempo from a typed YAML profile."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tempo-gen")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
