"""Task heads that run on partially decoded SSB features (installed as ``ssb.tasks``).

>>> import ssb.tasks
>>> ssb.tasks.list()                      # doctest: +SKIP
['detection']
>>> head = ssb.tasks.create("detection", score_thresh=0.5)   # doctest: +SKIP

Importing this package does not import torch: a head's module is imported when the head is
created (see :mod:`ssb.tasks.registry`).  Heads never import ``ssb.adapters``.
"""

from ssb.tasks.registry import UnknownTaskError, create, list_tasks, register

list = list_tasks  # noqa: A001 - timm-style ``ssb.tasks.list()``

__all__ = ["UnknownTaskError", "create", "list", "list_tasks", "register"]
