"""tempo-gen: render a hardened deployment bundle for Tempo from a typed YAML profile."""

# The single source of the version (pyproject.toml reads it); only MANIFEST.json carries it.
__version__ = "0.1.0"
