"""pkgedge: a self-hostable Python package index and the caching edge in front of it."""

__version__ = "0.1.0"

__all__ = ["__version__"]
