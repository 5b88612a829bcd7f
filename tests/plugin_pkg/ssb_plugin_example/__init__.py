"""An example third-party SSB task head, registered through the ``ssb.tasks`` entry-point group.

:class:`ActivityHead` turns the decoded stride-8 split features into a coarse "activity" map
(the mean absolute feature value per cell, relative to the frame's median): cells where the
scene holds structure light up.  It shows the whole plug-in contract: the declarations
(``required_features``, ``needs_group_masks``) and the call ``head(features, image_sizes=...)``
returning one dict per image.
"""

from __future__ import annotations

__all__ = ["ActivityHead"]


class ActivityHead:
    """Split features -> ``{"activity": [h, w] tensor, "active_fraction": float}`` per image."""

    required_features = {"split": {"channels": 32, "stride": 8}}
    needs_group_masks = False

    def __init__(self, *, threshold: float = 2.0):
        self.threshold = float(threshold)

    def __call__(self, features, image_sizes=None):
        split = features["split"]
        energy = split.abs().mean(dim=1)  # [B, h, w]
        out = []
        for e in energy:
            rel = e / e.median().clamp(min=1e-6)
            out.append({"activity": rel, "active_fraction": float((rel > self.threshold).float().mean())})
        return out
