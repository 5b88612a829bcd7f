"""Importing mmaction2 1.2.0 (private to :mod:`ssb.adapters`).

The published ``mmaction2==1.2.0`` wheel (installed with ``--no-deps``, requirements/action.txt) cannot be imported as it is:

* it leaves out the package ``mmaction.models.localizers.drn`` that
  ``mmaction/models/localizers/__init__.py`` imports (upstream issue 2714), so
  ``import mmaction.models`` fails with ``ModuleNotFoundError``;
* ``mmaction.utils.dependency`` imports the ``importlib_metadata`` backport, which the
  wheel does not declare;
* ``mmaction/__init__.py`` asserts ``2.0.0rc4 <= mmcv < 2.2.0`` (a bare ``AssertionError``
  under mmcv 2.2), and mmcv-lite (the build without compiled ops) warns at import that
  its deformable attention is unavailable.

:func:`load_mmaction` works around exactly these, and only when the mmaction adapter is
used (never at ``import ssb`` / ``import ssb.adapters``): it puts placeholder modules for
``...localizers.drn`` and ``...localizers.drn.drn`` into :data:`sys.modules` when that folder
is absent from the installed package (its ``DRN`` raises :class:`MissingDependencyError` if a
config builds it), aliases ``importlib_metadata`` to the standard library's
``importlib.metadata`` when the backport is not installed, checks the mmcv version before
mmaction does, silences mmcv-lite's import warning, imports every mmaction registry
(``register_all_modules(init_default_scope=False)``), then defines and registers the
classes of :data:`COMPONENTS` (so defining them never needs mmaction at import time).
A complete install is left untouched: each patch is applied only where its target is missing.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import re
import sys
import threading
import warnings
from types import ModuleType
from typing import Any, Mapping, Sequence

import numpy as np

from ssb.errors import MalformedFieldError, MissingDependencyError, ModelMismatchError

from ._arrays import numeric

__all__ = ["COMPONENTS", "INSTALL_HINT", "SUPPORTED", "component", "load_mmaction", "patches_applied"]

INSTALL_HINT = ("pip install --no-deps mmaction2==1.2.0 mmengine==0.10.7 mmcv-lite==2.1.0 addict yapf termcolor "
                "einops rich pyyaml (the list in the SSB repository's requirements/action.txt)")
#: distributions the shim was written against (requirements/action.txt pins them)
SUPPORTED = {"mmaction2": "1.2.0", "mmengine": "0.10.7", "mmcv-lite": "2.1.0"}

_DRN = "mmaction.models.localizers.drn"
_MMCV_RANGE = ((2, 0, 0), (2, 2, 0))  # mmaction2 1.2.0 accepts 2.0.0rc4 <= mmcv < 2.2.0

_lock = threading.RLock()
_loaded: ModuleType | None = None
_patches: list[str] = []
#: SSB classes registered in mmaction's registries by :func:`load_mmaction`
COMPONENTS = ("SSBFeatureBackbone", "SSBFeatureDataset", "LoadSSBFeatures")
FEATURE_SUFFIXES = (".pt", ".pth", ".npy")
_components: dict[str, type] = {}


def _missing(what: str, exc: BaseException | None = None) -> MissingDependencyError:
    detail = f" ({exc})" if exc is not None else ""
    return MissingDependencyError(f"{what} is required for the mmaction2 adapter but is not installed{detail}; "
                                  f"install it with: {INSTALL_HINT}", field="mmaction")


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise _missing(name, exc) from exc


def _version_tuple(text: str) -> tuple[int, ...]:
    """``"2.1.0"`` -> ``(2, 1, 0)``; pre-release tags are ignored (``"2.0.0rc4"`` -> ``(2, 0, 0)``)."""
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3]) or (0,)


def _placeholder_drn() -> None:
    """Placeholders for ``mmaction.models.localizers.drn[.drn]`` when the wheel lacks that folder."""
    spec = importlib.util.find_spec("mmaction")  # finds the top-level package without running it
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    shipped = any(os.path.isdir(os.path.join(r, "models", "localizers", "drn")) for r in roots)
    if shipped or _DRN in sys.modules:
        return

    class DRN:  # noqa: D401 - stands in for mmaction's DRN localizer
        """Placeholder for mmaction2's DRN localizer, which the mmaction2 1.2.0 wheel does not ship."""

        def __init__(self, *args: object, **kwargs: object):
            raise MissingDependencyError(
                "mmaction2 1.2.0's wheel lacks mmaction.models.localizers.drn (upstream issue 2714); "
                "DRN needs an mmaction2 installed from source", field="model.type")

    package = ModuleType(_DRN, "Placeholder installed by ssb.adapters: the mmaction2 1.2.0 wheel lacks it.")
    package.__spec__ = importlib.machinery.ModuleSpec(_DRN, None, is_package=True)
    package.__path__ = []
    module = ModuleType(f"{_DRN}.drn", "Placeholder installed by ssb.adapters: DRN is unavailable.")
    module.__spec__ = importlib.machinery.ModuleSpec(f"{_DRN}.drn", None)
    DRN.__module__, DRN.__qualname__ = module.__name__, "DRN"
    module.DRN = DRN
    package.drn = module
    for mod in (package, module):
        mod.__ssb_placeholder__ = True
        sys.modules[mod.__name__] = mod
    _patches.append(f"placeholder {_DRN}")


def _alias_importlib_metadata() -> None:
    """``importlib_metadata`` -> ``importlib.metadata`` when the backport is absent (mmaction uses
    ``distribution`` and ``PackageNotFoundError``, which the standard library has)."""
    try:
        importlib.import_module("importlib_metadata")
        return
    except ImportError:
        import importlib.metadata as stdlib_metadata

    sys.modules["importlib_metadata"] = stdlib_metadata
    _patches.append("importlib_metadata -> importlib.metadata")


def _check_mmcv() -> None:
    mmcv = _import("mmcv")
    version = str(getattr(mmcv, "__version__", "0"))
    low, high = _MMCV_RANGE
    if not low <= _version_tuple(version) < high:
        raise MissingDependencyError(
            f"mmaction2 1.2.0 needs 2.0.0rc4 <= mmcv < 2.2.0, but mmcv {version} is installed; "
            f"install mmcv-lite==2.1.0 ({INSTALL_HINT})", field="mmcv")


def load_mmaction() -> ModuleType:
    """Import mmaction2 with the workarounds above and return the ``mmaction`` package.

    Idempotent and thread-safe.  Afterwards ``mmaction.registry``, ``mmaction.models``,
    ``mmaction.datasets``, ``mmaction.structures`` and ``mmaction.apis`` are importable and
    mmaction's and SSB's components (:data:`COMPONENTS`) are in its registries.  The default
    scope is not changed: give ``default_scope='mmaction'`` to mmengine's ``Runner`` (or call
    ``mmengine.registry.init_default_scope('mmaction')``) when building from config dicts.

    Raises :class:`MissingDependencyError` (with :data:`INSTALL_HINT`) when torch,
    mmengine, mmcv or mmaction2 is missing or mmcv is a version mmaction2 1.2.0 refuses.
    """
    global _loaded
    with _lock:
        if _loaded is not None:
            return _loaded
        from ssb._optional import require

        require("torch", "the mmaction2 adapter")
        for name in ("mmengine", "mmaction"):
            if importlib.util.find_spec(name) is None:
                raise _missing(name)
        _check_mmcv()
        _alias_importlib_metadata()
        _placeholder_drn()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*MultiScaleDeformableAttention.*")
            try:
                mmaction = importlib.import_module("mmaction")
                from mmaction.utils import register_all_modules

                register_all_modules(init_default_scope=False)
                importlib.import_module("mmaction.apis")
            except AssertionError as exc:  # mmaction's own version asserts
                raise MissingDependencyError(f"{exc} ({INSTALL_HINT})", field="mmaction") from exc
            except ImportError as exc:
                raise _missing(getattr(exc, "name", None) or "a module mmaction2 imports", exc) from exc
        if "placeholder" in " ".join(_patches):
            _register_placeholder_drn()
        _components.update(_build_components())
        _loaded = mmaction
        return mmaction


def _register_placeholder_drn() -> None:
    from mmaction.registry import MODELS

    if MODELS.get("DRN") is None:
        MODELS.register_module(name="DRN", module=sys.modules[f"{_DRN}.drn"].DRN)


def patches_applied() -> tuple[str, ...]:
    """What :func:`load_mmaction` patched on this install (empty on a complete one)."""
    return tuple(_patches)


def component(name: str) -> type:
    """The registered SSB class ``name`` (one of :data:`COMPONENTS`), loading mmaction first."""
    load_mmaction()
    return _components[name]


# ---------------------------------------------------------------------------------------------
# SSB components registered in mmaction's registries (defined only once mmaction is loaded)
# ---------------------------------------------------------------------------------------------


def load_features(value: Any, field: str = "features", in_channels: int | None = None) -> np.ndarray:
    """float32 ``[T, C, H, W]`` features from an array, a tensor or a ``.pt`` / ``.pth`` / ``.npy`` path."""
    if isinstance(value, (str, os.PathLike)):
        path = os.fspath(value)
        if not path.endswith(FEATURE_SUFFIXES):
            raise MalformedFieldError(f"feature files must end in {FEATURE_SUFFIXES}, got {path!r}", field=field)
        if not os.path.isfile(path):
            raise MalformedFieldError(f"no feature file {path!r}", field=field)
        if path.endswith(".npy"):
            value = np.load(path, allow_pickle=False)
        else:
            import torch

            value = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(value, torch.Tensor):
                raise MalformedFieldError(f"{path!r} holds a {type(value).__name__}, not a tensor", field=field)
    arr = numeric(value, field, np.float32)
    if arr.ndim != 4 or 0 in arr.shape:
        raise MalformedFieldError(f"features must be [T, C, H, W], got {list(arr.shape)}", field=field)
    if in_channels is not None and arr.shape[1] != in_channels:
        raise ModelMismatchError(f"features have {arr.shape[1]} channels, expected {in_channels}", field=field)
    if not np.all(np.isfinite(arr)):
        raise MalformedFieldError("features hold NaN or infinite values", field=field)
    return np.ascontiguousarray(arr)


def _segment_indices(total: int, num_segments: int, test_mode: bool) -> np.ndarray:
    """TSN sampling: one frame per equal segment, random in training, the centre in test mode."""
    edges = np.linspace(0.0, total, num_segments + 1)
    offset = 0.5 if test_mode else np.random.random_sample(num_segments)
    return np.minimum((edges[:-1] + offset * (edges[1:] - edges[:-1])).astype(np.int64), total - 1)


def _build_components() -> dict[str, type]:
    import mmengine
    from mmaction.datasets import BaseActionDataset
    from mmaction.registry import DATASETS, MODELS, TRANSFORMS
    from mmcv.cnn import ConvModule
    from mmcv.transforms import BaseTransform
    from mmengine.model import BaseModule
    from torch import nn

    class SSBFeatureBackbone(BaseModule):
        """Decoded SSB split features ``[N*T, C, H, W]`` -> ``[N*T, out_channels, H, W]`` for ``TSNHead``.

        One ``ConvModule`` (3x3 conv, ``norm_cfg``, ``act_cfg``) per entry of ``channels``;
        ``channels=()`` is the identity (``out_channels == in_channels``).  The reference codec's
        split features have 32 channels at stride 8 (a 38x38 grid for a 300x300 input).
        """

        def __init__(self, in_channels: int = 32, channels: Sequence[int] = (64,),
                     norm_cfg: dict | None = dict(type="BN"), act_cfg: dict | None = dict(type="ReLU"),
                     init_cfg: dict | list | None = None):
            super().__init__(init_cfg=init_cfg)
            if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
                raise MalformedFieldError(f"in_channels must be a positive int, got {in_channels!r}",
                                          field="in_channels")
            widths = [int(c) for c in channels]
            if any(c < 1 for c in widths):
                raise MalformedFieldError(f"channels must be positive, got {widths}", field="channels")
            self.in_channels = in_channels
            self.out_channels = widths[-1] if widths else in_channels
            layers, prev = [], in_channels
            for width in widths:
                layers.append(ConvModule(prev, width, 3, padding=1, norm_cfg=norm_cfg, act_cfg=act_cfg))
                prev = width
            self.layers = nn.Sequential(*layers)

        def forward(self, x):
            if x.ndim != 4 or x.shape[1] != self.in_channels:
                raise ModelMismatchError(f"expected [N*T, {self.in_channels}, H, W] features, got {list(x.shape)}",
                                         field="inputs")
            return self.layers(x)

    class LoadSSBFeatures(BaseTransform):
        """``results["features"]`` (array, tensor or file path) -> ``results["imgs"]`` float32 ``[T', C, H, W]``.

        With ``num_segments`` the clip is sampled TSN-style to that many frames (random within
        each segment in training, the centre with ``test_mode``); ``PackActionInputs`` then packs
        ``imgs`` as the model's ``inputs``.  Also sets ``frame_inds``, ``total_frames``,
        ``img_shape`` (the feature grid) and ``num_clips`` (1).
        """

        def __init__(self, num_segments: int | None = None, test_mode: bool = False,
                     in_channels: int | None = None):
            if num_segments is not None and (isinstance(num_segments, bool) or int(num_segments) < 1):
                raise MalformedFieldError(f"num_segments must be positive, got {num_segments!r}",
                                          field="num_segments")
            self.num_segments = None if num_segments is None else int(num_segments)
            self.test_mode = bool(test_mode)
            self.in_channels = in_channels

        def transform(self, results: dict) -> dict:
            feats = load_features(results["features"], "features", self.in_channels)
            total = feats.shape[0]
            if self.num_segments is None:
                inds = np.arange(total)
            else:
                inds = _segment_indices(total, self.num_segments, self.test_mode)
            results.update(imgs=feats[inds], frame_inds=inds, total_frames=total,
                           img_shape=tuple(feats.shape[2:]), num_clips=1, clip_len=len(inds))
            return results

        def __repr__(self) -> str:
            return (f"{type(self).__name__}(num_segments={self.num_segments}, test_mode={self.test_mode}, "
                    f"in_channels={self.in_channels})")

    class SSBFeatureDataset(BaseActionDataset):
        """SSB feature clips and labels as an mmaction2 dataset.

        ``samples`` is a list of ``(features, label)`` pairs or ``{"features", "label"}`` dicts,
        features a ``[T, C, H, W]`` array / tensor or the path of a ``.pt`` / ``.pth`` / ``.npy``
        file (relative paths start at ``data_prefix["features"]``); without ``samples``, the same
        list is read from ``ann_file`` (``.pkl`` / ``.json`` via ``mmengine.load``).  The default
        pipeline is ``LoadSSBFeatures`` then ``PackActionInputs``; its config dicts are built from
        mmaction's ``TRANSFORMS``, so no default scope is needed.
        """

        def __init__(self, samples: Sequence[Any] | None = None, ann_file: str = "",
                     pipeline: Sequence[Any] = (dict(type="LoadSSBFeatures"), dict(type="PackActionInputs")),
                     data_prefix: dict | None = None, **kwargs: Any):
            if samples is None and not ann_file:
                raise MalformedFieldError("give samples or an ann_file", field="samples")
            self._samples = samples
            # built from mmaction's TRANSFORMS, so this works with no default scope set (outside a Runner)
            steps = [TRANSFORMS.build(t) if isinstance(t, dict) else t for t in pipeline]
            super().__init__(ann_file, pipeline=steps, data_prefix=dict(data_prefix or {"features": ""}), **kwargs)

        def load_data_list(self) -> list[dict]:
            raw = self._samples if self._samples is not None else mmengine.load(self.ann_file)
            if isinstance(raw, Mapping) or not isinstance(raw, Sequence):
                raise MalformedFieldError("samples must be a list of (features, label)", field="samples")
            root, out = self.data_prefix.get("features", ""), []
            for i, item in enumerate(raw):
                field = f"samples[{i}]"
                if isinstance(item, Mapping) and "features" in item and "label" in item:
                    feats, label = item["features"], item["label"]
                elif isinstance(item, (tuple, list)) and len(item) == 2:
                    feats, label = item
                else:
                    raise MalformedFieldError("a sample is (features, label) or {'features', 'label'}", field=field)
                if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or label < 0:
                    raise MalformedFieldError(f"label must be a non-negative int, got {label!r}",
                                              field=f"{field}.label")
                if isinstance(feats, (str, os.PathLike)):
                    feats = os.path.join(root, os.fspath(feats)) if root else os.fspath(feats)
                    if not feats.endswith(FEATURE_SUFFIXES) or not os.path.isfile(feats):
                        raise MalformedFieldError(f"no {FEATURE_SUFFIXES} feature file {feats!r}",
                                                  field=f"{field}.features")
                elif (feats.ndim if hasattr(feats, "ndim") else np.ndim(feats)) != 4:
                    raise MalformedFieldError("features must be [T, C, H, W]", field=f"{field}.features")
                out.append({"features": feats, "label": int(label)})
            return out

    pairs = ((MODELS, SSBFeatureBackbone), (TRANSFORMS, LoadSSBFeatures), (DATASETS, SSBFeatureDataset))
    for registry, cls in pairs:
        cls.__module__, cls.__qualname__ = "ssb.adapters.mmaction", cls.__name__
        registry.register_module(module=cls, force=True)
    return {c.__name__: c for c in (SSBFeatureBackbone, SSBFeatureDataset, LoadSSBFeatures)}
