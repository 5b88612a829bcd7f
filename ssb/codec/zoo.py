"""Reference model weights: where they live, what they were made for, how they load.

The default weights (``ssb/weights/omni_ssd_s8.pt``) are SSB's own, produced by
``ssb train`` (see ``docs/training.md``).  Each weights file records the model id, its
configuration and the SHA-256 prefix of the teacher graph whose split features it codes; a
mismatch is refused with :class:`~ssb.errors.ModelMismatchError` instead of producing
garbage features.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from ssb.errors import ModelMismatchError

#: Identifier written in every bitstream this codec makes (sequence-header metadata).
MODEL_ID = "omni-ssd-mbv2.s8"
WEIGHTS_FILE = "omni_ssd_s8.pt"


@functools.lru_cache(maxsize=None)
def teacher_fingerprint() -> str:
    """First 16 hex digits of the SHA-256 of the teacher's frozen graph."""
    from ssb.backbones.teacher_weights import teacher_sha256
    from ssb.resources import ssd_mobilenet_v2_files

    return teacher_sha256(ssd_mobilenet_v2_files()[0])[:16]


def default_weights_path() -> Path:
    """``$SSB_WEIGHTS`` if set, else the weights shipped inside the package."""
    env = os.environ.get("SSB_WEIGHTS")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "weights" / WEIGHTS_FILE


def load_codec(path: str | Path | None = None, *, check_teacher: bool = True):
    """Load a :class:`~ssb.codec.feature_codec.FeatureCodec` ready to code (tables included)."""
    import torch

    from ssb.codec.feature_codec import FeatureCodec, FeatureCodecConfig

    path = Path(path) if path else default_weights_path()
    if not path.is_file():
        raise ModelMismatchError(
            f"no codec weights at {path}: train them with `ssb train` (docs/training.md) or set SSB_WEIGHTS",
            field="weights",
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelMismatchError(f"cannot read codec weights {path}: {exc}", field="weights") from exc
    if not isinstance(ckpt, dict) or ckpt.get("model_id") != MODEL_ID:
        raise ModelMismatchError(
            f"{path} holds model {ckpt.get('model_id') if isinstance(ckpt, dict) else '?'!r}, expected {MODEL_ID!r}",
            field="weights.model_id",
        )
    if check_teacher and ckpt.get("teacher") != teacher_fingerprint():
        raise ModelMismatchError(
            f"{path} was trained on teacher {ckpt.get('teacher')}, but the installed teacher is {teacher_fingerprint()}",
            field="weights.teacher",
        )
    cfg = dict(ckpt["config"])
    cfg["lambdas"] = tuple(cfg["lambdas"])
    codec = FeatureCodec(FeatureCodecConfig(**cfg))
    codec.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()})
    codec.eval()
    codec.weights_path = str(path)
    codec.weights_meta = ckpt.get("meta", {})
    return codec
