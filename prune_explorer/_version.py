"""Single source of the package version (read by pyproject.toml via setuptools' dynamic version)."""

__version__ = "0.1.0"
