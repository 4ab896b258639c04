"""Version of edgel3."""

__version__ = "0.3.0.dev0"
