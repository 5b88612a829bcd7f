"""ONNX Runtime for SSB's decoder-side float networks: CPU, or CUDA with ``onnxruntime-gpu``.

>>> from ssb.adapters.onnx import OrtRuntime                          # doctest: +SKIP
>>> rt = OrtRuntime(codec)                     # graphs exported once, cached under $SSB_CACHE/onnx
>>> split = rt.codec().decompress(item)        # exact entropy decoding in torch, g_s in ORT
>>> dets = rt.wrap(detection_head)(split, image_sizes=[(576, 768)])   # same dicts as the torch head
>>> models = rt.wrap_models(ssb.pipeline.load_models(tasks=["detection", "pose"]))

What runs where:

* ONNX Runtime: the codec's synthesis ``g_s`` (on the de-gained latent), the detection head's
  tail and box predictors (split features -> box codes + class logits), the per-RoI nets of the
  pose and segmentation heads, the pixel decoder.  Graphs: :mod:`ssb.adapters.onnx_export`.
* PyTorch / numpy, unchanged: the entropy decoding and the integer hyper-synthesis (they feed
  the coder's tables and must stay integer-exact), the de-gaining and crop, anchor decoding,
  sigmoid and per-class NMS (the head's own ``postprocess``), RoIAlign (torchvision), heatmap
  decoding, mask pasting.  The wrappers are *views* of the torch modules that swap only the
  network call, so every line of pre- and post-processing is the torch heads' own code.

Providers: ``CUDAExecutionProvider`` first when ``onnxruntime.get_available_providers()`` has it
(``pip install 'ssb[gpu]'``, never together with the ``onnx`` extra's ``onnxruntime``), else
``CPUExecutionProvider``.  Importing this module imports neither torch nor onnxruntime.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ssb._optional import require
from ssb.errors import MalformedFieldError, ModelMismatchError

from . import onnx_export as ox

__all__ = ["OrtDetectionHead", "OrtPixelSynthesis", "OrtPoseHead", "OrtRoIHead", "OrtRuntime",
           "OrtSegmentationHead", "OrtSynthesis", "available_providers", "resolve_providers"]

#: Execution providers in order of preference.
PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")


def _ort():
    return require("onnxruntime", "the ONNX Runtime backend")


def _torch():
    return require("torch", "the ONNX Runtime backend")


def available_providers() -> list[str]:
    """``onnxruntime.get_available_providers()`` (raises :class:`MissingDependencyError` without it)."""
    return list(_ort().get_available_providers())


def resolve_providers(providers: Sequence[str] | None = None) -> list[str]:
    """The providers to use: ``providers`` (each must be available) or CUDA first when present, then CPU."""
    avail = available_providers()
    if providers is None:
        return [p for p in PREFERRED_PROVIDERS if p in avail] or avail[:1]
    wanted = [str(p) for p in providers]
    missing = [p for p in wanted if p not in avail]
    if not wanted or missing:
        raise MalformedFieldError(f"execution providers {missing or wanted} not available (this onnxruntime "
                                  f"has {avail}; CUDA needs onnxruntime-gpu: pip install 'ssb[gpu]')",
                                  field="providers")
    return wanted


class _Graph:
    """One exported network in an ``InferenceSession``: torch tensors in, numpy arrays out."""

    def __init__(self, spec: ox.NetSpec, runtime: "OrtRuntime"):
        ort = _ort()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = runtime.threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        for refresh in (False, True):  # a damaged or foreign file under the right name is exported again
            path = ox.ensure_exported(spec, runtime.models_dir, refresh=refresh)
            try:
                self.session = ort.InferenceSession(str(path), opts, providers=runtime.providers)
            except Exception as exc:
                if refresh:
                    raise ModelMismatchError(f"ONNX Runtime cannot load {path}: {exc}", field="onnx") from exc
                continue
            self.meta = dict(self.session.get_modelmeta().custom_metadata_map)
            if self.meta.get("ssb.key") == spec.key:
                break
        else:  # pragma: no cover - a freshly exported file always carries its key
            raise ModelMismatchError(f"{path} does not hold the {spec.kind} graph it is named for",
                                     field="onnx.key")
        self.path = path
        self.input_names = [i.name for i in self.session.get_inputs()]

    def run(self, *inputs) -> list:
        feeds = {name: x.detach().to("cpu", _torch().float32).contiguous().numpy()
                 for name, x in zip(self.input_names, inputs)}
        return self.session.run(None, feeds)

    def run_torch(self, *inputs) -> list:
        """:meth:`run`, outputs as torch tensors on the first input's device."""
        torch, dev = _torch(), inputs[0].device
        return [torch.from_numpy(o).to(dev) for o in self.run(*inputs)]


class OrtRuntime:
    """Sessions over the exported graphs, exported on first use into ``models_dir`` and reused.

    Parameters
    ----------
    codec:
        The :class:`~ssb.codec.feature_codec.FeatureCodec` whose synthesis to run (needed by
        :meth:`synthesis` and :meth:`codec` only).
    models_dir:
        Folder of the ``.onnx`` files (default ``$SSB_CACHE/onnx``): a file is found there by the
        key of the weights it was exported from, exported into it when absent.  A folder
        prepared once (:meth:`prepare`) needs neither ``onnx`` nor ``onnxscript`` at run time.
    providers:
        ONNX Runtime execution providers (default: CUDA first when available, else CPU).
    threads:
        Intra-op threads of every session (default ``torch.get_num_threads()``).
    """

    def __init__(self, codec: Any = None, *, models_dir: str | Path | None = None,
                 providers: Sequence[str] | None = None, threads: int | None = None):
        self.torch_codec = codec
        self.models_dir = Path(models_dir) if models_dir is not None else ox.onnx_cache_dir()
        self.providers = resolve_providers(providers)
        self.threads = int(threads) if threads else _torch().get_num_threads()
        self._graphs: dict[str, _Graph] = {}
        self._synthesis: OrtSynthesis | None = None

    def graph(self, spec: ox.NetSpec) -> _Graph:
        """The session of ``spec`` (exported and loaded once per runtime)."""
        if spec.key not in self._graphs:
            self._graphs[spec.key] = _Graph(spec, self)
        return self._graphs[spec.key]

    @property
    def active_providers(self) -> list[str]:
        """Providers the loaded sessions actually run on (ORT falls back to CPU when CUDA cannot start)."""
        return sorted({p for g in self._graphs.values() for p in g.session.get_providers()})

    # -- codec ----------------------------------------------------------------------------------
    def _need_codec(self) -> Any:
        if self.torch_codec is None:
            raise MalformedFieldError("this OrtRuntime was made without a codec", field="codec")
        return self.torch_codec

    def synthesis_net(self) -> "OrtSynthesis":
        """The ORT stand-in of ``codec.g_s``."""
        if self._synthesis is None:
            self._synthesis = OrtSynthesis(self._need_codec(), self)
        return self._synthesis

    def synthesis(self, y_scaled: Any, hw: tuple[int, int] | None = None) -> Any:
        """Split features from the de-gained latent ``y_hat / gain`` (``[B, 64, H, W]``), cropped to ``hw``
        (default ``2H x 2W``): what ``FeatureCodec._synthesize`` computes, with ``g_s`` in ORT."""
        out = self.synthesis_net()(y_scaled)
        return out if hw is None else out[..., : int(hw[0]), : int(hw[1])]

    def codec(self, codec: Any = None) -> Any:
        """A view of the codec whose ``g_s`` runs in ORT: ``decompress`` keeps its exact entropy path
        (the same entropy modules, tables and integer hyper-synthesis objects), only the float
        synthesis changes.  A drop-in for ``Models.codec``."""
        if codec is not None and codec is not self.torch_codec:
            return OrtRuntime(codec, models_dir=self.models_dir, providers=self.providers,
                              threads=self.threads).codec()
        return _view(self._need_codec(), g_s=self.synthesis_net())

    # -- heads ----------------------------------------------------------------------------------
    def wrap(self, head: Any, *, strict: bool = False) -> Any:
        """The ORT wrapper of a torch head (detection, RoI heads) or pixel decoder.

        Other objects are returned unchanged (they keep running in torch), or refused with
        ``strict=True``; an already wrapped head is returned as is.
        """
        from ssb.codec.pixels import PixelSynthesis
        from ssb.tasks.detection import DetectionHead
        from ssb.tasks.roi import RoIHead

        if isinstance(head, (_OrtHead, OrtPixelSynthesis)):
            return head
        if isinstance(head, DetectionHead):
            return OrtDetectionHead(head, self)
        if isinstance(head, RoIHead):
            return OrtRoIHead(head, self)
        if isinstance(head, PixelSynthesis):
            return OrtPixelSynthesis(head, self)
        if strict:
            raise MalformedFieldError(f"no ONNX Runtime version of {type(head).__name__}", field="head")
        return head

    def wrap_models(self, models: Any) -> Any:
        """A copy of a ``ssb.pipeline.Models`` whose codecs decode with their synthesis in ORT and whose
        heads run in ORT (the encoder-side front and the group fusion stay in torch).  Heads the
        pipeline creates later are wrapped when they are created."""
        out = copy.copy(models)
        out.zoo = _OrtModelSet(models.zoo, self)
        out.heads = _OrtHeads(self, {name: self.wrap(h) for name, h in getattr(models, "heads", {}).items()})
        return out

    def prepare(self, *modules: Any, grid: tuple[int, int] = (38, 38)) -> list[Path]:
        """Export (or find) the graphs of the codec and of ``modules`` now; their paths."""
        paths = [self.synthesis_net().graph.path] if self.torch_codec is not None else []
        for m in modules:
            w = self.wrap(m, strict=True)
            paths.append(w.graph_for(grid).path if isinstance(w, OrtDetectionHead) else w.graph.path)
        return paths


class _OrtModelSet:
    """A model set whose codecs are ORT views (see :meth:`OrtRuntime.codec`); everything else as given."""

    def __init__(self, zoo: Any, runtime: "OrtRuntime"):
        self._zoo, self._rt, self._views = zoo, runtime, {}

    def codec(self, model_id: str | None = None) -> Any:
        codec = self._zoo.codec(model_id)
        if id(codec) not in self._views:
            self._views[id(codec)] = self._rt.codec(codec)
        return self._views[id(codec)]

    def get(self, kind: str, **kw: Any) -> Any:
        model = self._zoo.get(kind, **kw)
        return self._rt.wrap(model) if kind == "pixels" and model is not None else model

    def __getattr__(self, name: str) -> Any:
        return getattr(self._zoo, name)


class _OrtHeads(dict):
    """The pipeline's head table: a head put in it is stored as its ORT wrapper."""

    def __init__(self, runtime: "OrtRuntime", heads: dict):
        super().__init__(heads)
        self._rt = runtime

    def __setitem__(self, name: str, head: Any) -> None:
        super().__setitem__(name, self._rt.wrap(head))

    def setdefault(self, name: str, head: Any = None) -> Any:
        if name not in self:
            self[name] = head
        return self[name]


def _view(module: Any, **overrides: Any) -> Any:
    """A shallow copy of ``module`` whose attributes ``overrides`` shadow the originals (left untouched)."""
    view = copy.copy(module)
    for name, value in overrides.items():
        object.__setattr__(view, name, value)
    return view


class OrtSynthesis:
    """ORT stand-in of ``codec.g_s``: de-gained latent ``[B, 64, H, W]`` -> split ``[B, 32, 2H, 2W]``."""

    def __init__(self, codec: Any, runtime: OrtRuntime | None = None):
        self.runtime = runtime or OrtRuntime(codec)
        self.graph = self.runtime.graph(ox.synthesis_spec(codec))
        self.in_channels = int(codec.config.latent)

    def __call__(self, y_scaled: Any) -> Any:
        if getattr(y_scaled, "ndim", 0) != 4 or y_scaled.shape[1] != self.in_channels:
            raise MalformedFieldError(f"expected a latent [B, {self.in_channels}, H, W], got "
                                      f"{tuple(getattr(y_scaled, 'shape', ()))}", field="y_scaled")
        return self.graph.run_torch(y_scaled)[0]


class _OrtHead:
    """Shared delegation: calls and attributes go to a view of the torch head with its network in ORT."""

    def __init__(self, head: Any, runtime: OrtRuntime | None = None):
        self.torch_head = head
        self.runtime = runtime or OrtRuntime()
        self._view = self._make_view(head)

    def _make_view(self, head: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, *args: Any, **kwargs: Any) -> list[dict]:
        return self._view(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_view", "torch_head", "runtime"):
            raise AttributeError(name)
        return getattr(self._view, name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self.torch_head).__name__}, providers={self.runtime.providers})"


class OrtDetectionHead(_OrtHead):
    """A :class:`~ssb.tasks.detection.DetectionHead` whose tail and box predictors run in ORT.

    Called exactly like the torch head, ``head(features, image_sizes=[(h, w), ...])``; anchors
    come from the torch head's :meth:`anchors` and decoding, sigmoid and per-class NMS from its
    :meth:`postprocess`.  One graph per split grid (38x38 for 300x300 input), exported on first use.
    """

    def _make_view(self, head: Any) -> Any:
        self._grids: dict[tuple[int, int], _Graph] = {}
        return _view(head, raw_outputs=self.raw_outputs)

    def graph_for(self, grid: tuple[int, int]) -> _Graph:
        """The session of the graph for split features of size ``grid``."""
        grid = (int(grid[0]), int(grid[1]))
        if grid not in self._grids:
            self._grids[grid] = self.runtime.graph(ox.detection_spec(self.torch_head, grid))
        return self._grids[grid]

    def raw_outputs(self, split: Any) -> tuple[Any, Any, Any]:
        """(box codes ``[B, N, 4]``, class logits ``[B, N, 91]``, anchors ``[N, 4]``), as the torch head's."""
        from ssb.backbones.ssd_mobilenet_v2 import SPLIT_CHANNELS

        if getattr(split, "ndim", 0) != 4 or split.shape[1] != SPLIT_CHANNELS:
            raise MalformedFieldError(f"expected split features [B, {SPLIT_CHANNELS}, h, w], got "
                                      f"{tuple(getattr(split, 'shape', ()))}", field="features.split")
        graph = self.graph_for(tuple(split.shape[-2:]))
        codes, logits = graph.run_torch(split)
        shapes = [tuple(s) for s in json.loads(graph.meta["ssb.feature_shapes"])]
        return codes, logits, self.torch_head.anchors(shapes, split.device)


class _LazyDetector:
    """The RoI head's own detector (built on first use, as the torch head does), run through ORT."""

    def __init__(self, head: Any, runtime: OrtRuntime):
        self.head, self.runtime, self.ort = head, runtime, None

    def __call__(self, *args: Any, **kwargs: Any) -> list[dict]:
        if self.ort is None:
            self.ort = OrtDetectionHead(self.head.detector, self.runtime)
        return self.ort(*args, **kwargs)


class OrtRoIHead(_OrtHead):
    """A :class:`~ssb.tasks.roi.RoIHead` (pose, segmentation) whose per-RoI net runs in ORT.

    RoIAlign (torchvision), box selection, heatmap decoding and mask pasting are the torch
    head's code; without ``detections=`` its internal detector runs through :class:`OrtDetectionHead`.
    """

    def _make_view(self, head: Any) -> Any:
        self.graph = self.runtime.graph(ox.roi_spec(head))
        self.input_shape = tuple(json.loads(self.graph.meta["ssb.input_shape"]))
        self.output_shapes = [tuple(s) for s in json.loads(self.graph.meta["ssb.output_shapes"])]
        self.tuple_output = bool(json.loads(self.graph.meta["ssb.tuple_output"]))
        return _view(head, net=self.net, _detector=_LazyDetector(head, self.runtime))

    def net(self, pooled: Any) -> Any:
        """ORT stand-in of ``head.net``: pooled ``[K, C, h, w]`` -> the net's output(s)."""
        if getattr(pooled, "ndim", 0) != 4 or tuple(pooled.shape[1:]) != self.input_shape:
            want = ", ".join(map(str, self.input_shape))
            raise MalformedFieldError(f"expected pooled features [K, {want}], got "
                                      f"{tuple(getattr(pooled, 'shape', ()))}", field="pooled")
        if pooled.shape[0] == 0:  # no box: nothing for ORT to run
            outs = [pooled.new_zeros(0, *s) for s in self.output_shapes]
        else:
            outs = self.graph.run_torch(pooled)
        return tuple(outs) if self.tuple_output else outs[0]


#: Aliases naming the wrapped head.
OrtPoseHead = OrtRoIHead
OrtSegmentationHead = OrtRoIHead


class OrtPixelSynthesis:
    """:class:`~ssb.codec.pixels.PixelSynthesis` in ORT: ``model(split) -> RGB [B, 3, 8h, 8w]`` in [0, 1]
    (usable by :func:`ssb.codec.pixels.render`)."""

    def __init__(self, model: Any, runtime: OrtRuntime | None = None):
        self.torch_model = model
        self.runtime = runtime or OrtRuntime()
        self.graph = self.runtime.graph(ox.pixels_spec(model))
        self.in_channels = int(self.graph.meta["ssb.in_channels"])

    def __call__(self, split: Any | Mapping[str, Any]) -> Any:
        split = split["split"] if isinstance(split, Mapping) else split
        if getattr(split, "ndim", 0) != 4 or split.shape[1] != self.in_channels:
            raise MalformedFieldError(f"expected split features [B, {self.in_channels}, h, w], got "
                                      f"{tuple(getattr(split, 'shape', ()))}", field="features.split")
        return self.graph.run_torch(split)[0]
