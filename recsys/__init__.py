"""recsys-platform: a recommender from raw interactions to a monitored HTTP service."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("recsys-platform")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+source"

__all__ = ["__version__"]
