"""Helpers shared by the test modules (plain functions and classes; fixtures live in conftest.py files).

Imported as `support.<module>`: pytest puts tests/ on sys.path (pythonpath in pyproject.toml),
and mypy finds it through mypy_path.
"""
