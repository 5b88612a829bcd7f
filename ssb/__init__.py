"""SSB: analytics on semantically structured bitstreams.

``ssb.open`` reads a container lazily (standard library and numpy only);
the learned codec lives in :mod:`ssb.codec`, task heads in :mod:`ssb.tasks`
and framework bridges in :mod:`ssb.adapters`, each imported on demand.
"""

from ssb.errors import SSBError

__version__ = "0.2.0"
__all__ = ["SSBError", "open", "__version__"]


def open(source, **kwargs):  # noqa: A001 - mirrors builtins.open / PIL.Image.open
    """Open an SSB container lazily: see :func:`ssb.format.open`."""
    from ssb.format import open as _open

    return _open(source, **kwargs)
