"""Version of edgel3.

``__version__`` is the package version; ``version`` (the same string) and
``short_version`` (major.minor) are the names edgel3 0.2.1 defined here.
"""

__version__ = "0.3.0.dev0"
#: 0.2.1's name for the full version string.
version = __version__
#: Major and minor version, as 0.2.1's ``short_version`` (``'0.2'`` for 0.2.1).
short_version = ".".join(__version__.split(".")[:2])
