"""Deterministic, cached ONNX export of SSB's float decoder-side networks (used by :mod:`ssb.adapters.onnx`).

What is exported (one graph each, torch's ``torch.export``-based exporter, ``dynamo=True``,
opset :data:`OPSET`; BatchNorm folded, TF ``SAME`` pads folded into the convolutions):

``synthesis``
    the codec's feature synthesis ``g_s``: de-gained latent ``y_scaled [B, 64, H, W]`` ->
    ``split [B, 32, 2H, 2W]`` (uncropped; batch, H and W dynamic).  The entropy decoding and the
    integer hyper-synthesis are NOT exported: they feed the coder's tables and stay integer-exact
    in :mod:`ssb.entropy`; the division by the gain and the crop stay in the codec's torch code.
``detection``
    :meth:`DetectionHead.raw_outputs` without the anchors: ``split [B, 32, h, w]`` -> ``codes
    [B, N, 4]``, ``logits [B, N, 91]`` (batch dynamic; one graph per split grid, 38x38 for this
    model, because TF ``SAME`` padding depends on the size).  The SSD feature-map sizes the anchors
    need are stored in the graph's metadata (``ssb.feature_shapes``).
RoI nets (kind: the head's ``model_id``, ``pose-roi.s8`` / ``mask-roi.s8``)
    a RoI head's per-box net (``head.net``: pose :class:`KeypointNet`, masks :class:`MaskNet`):
    ``pooled [K, 32, *roi_size]`` -> its outputs (K dynamic).  RoIAlign stays in torchvision.
``pixels``
    :class:`~ssb.codec.pixels.PixelSynthesis`: ``split [B, 32, h, w]`` -> RGB ``[B, 3, 8h, 8w]``.

Each file is named ``<kind>-<key[:16]>.onnx`` under :func:`onnx_cache_dir` (or a caller's
folder) where ``key`` is the SHA-256 of the network's identity: the SHA-256 of the weights file
it came from when known (``codec.checkpoint_path``, the teacher graph for detection, a module's
``checkpoint_path``), a digest of the tensors actually in the module (so a retrained or modified
model never reuses an old file), its configuration, the opset and :data:`EXPORT_VERSION`.  The
full key is written in the graph's metadata (``ssb.key``) and checked on load.  Files are written
to a temporary name, then renamed.  Importing this module imports neither torch nor onnx.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssb._optional import require
from ssb.errors import MalformedFieldError

__all__ = ["EXPORT_VERSION", "OPSET", "NetSpec", "detection_spec", "ensure_exported", "export",
           "onnx_cache_dir", "pixels_spec", "roi_spec", "state_digest", "synthesis_spec"]

#: Bump when what a graph computes or how it is exported changes: old cache files are then not reused.
EXPORT_VERSION = 1
#: ONNX opset of every exported graph.
OPSET = 20


def onnx_cache_dir() -> Path:
    """``$SSB_CACHE/onnx`` (default ``~/.cache/ssb/onnx``), the cache of exported graphs."""
    return Path(os.environ.get("SSB_CACHE") or Path.home() / ".cache" / "ssb") / "onnx"


@dataclass
class NetSpec:
    """One network to export: the module, example inputs, I/O names, dynamic axes and its identity."""

    kind: str
    module: Any
    example: tuple
    input_names: list[str]
    output_names: list[str]
    #: per input: {axis: name} of the dynamic axes
    dynamic: list[dict[int, str]]
    identity: dict
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """SHA-256 (hex) of the identity, the opset and the export version."""
        blob = json.dumps({**self.identity, "kind": self.kind, "opset": OPSET,
                           "export_version": EXPORT_VERSION}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    @property
    def filename(self) -> str:
        return f"{self.kind}-{self.key[:16]}.onnx"


def state_digest(module: Any) -> str:
    """SHA-256 of a module's state dict (names, dtypes, shapes and bytes, in order)."""
    torch = require("torch", "ONNX export")
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _file_sha(path: Any) -> str | None:
    if not path or not Path(path).is_file():
        return None
    from ssb.resources import file_sha256

    return file_sha256(Path(path).resolve())


def _teacher_sha() -> str | None:
    """SHA-256 of the detection teacher's graph file, or ``None`` when it is not installed."""
    from ssb.errors import MissingDependencyError

    try:
        from ssb.resources import ssd_mobilenet_v2_files

        return _file_sha(ssd_mobilenet_v2_files()[0])
    except MissingDependencyError:
        return None


def _frozen(module: Any) -> Any:
    """An eval-mode deep copy: exporting never touches the caller's module (modes, caches)."""
    return copy.deepcopy(module).eval()


# -- what to export ---------------------------------------------------------------------------------


def synthesis_spec(codec: Any) -> NetSpec:
    """The codec's ``g_s`` (de-gained latent -> uncropped split features), batch, H, W dynamic."""
    torch = require("torch", "ONNX export")
    c = codec.config
    return NetSpec(
        "synthesis", _frozen(codec.g_s), (torch.zeros(2, c.latent, 19, 19),), ["y_scaled"], ["split"],
        [{0: "batch", 2: "height", 3: "width"}],
        {"weights_sha256": _file_sha(getattr(codec, "checkpoint_path", None)), "state": state_digest(codec.g_s),
         "latent": c.latent, "out_channels": c.in_channels},
        {"ssb.in_channels": str(c.latent)})


def detection_spec(head: Any, grid: tuple[int, int] = (38, 38)) -> NetSpec:
    """``DetectionHead.raw_outputs`` minus the anchors, for split features of size ``grid``, batch dynamic."""
    torch = require("torch", "ONNX export")
    from ssb.backbones.ssd_mobilenet_v2 import SPLIT_CHANNELS

    frozen = _frozen(head)

    class DetectionNet(torch.nn.Module):
        def __init__(self, h):
            super().__init__()
            self.head = h

        def forward(self, split):
            codes, logits, _ = self.head.raw_outputs(split)
            return codes, logits

    x = torch.zeros(2, SPLIT_CHANNELS, *grid)
    with torch.no_grad():
        shapes = [list(f.shape[-2:]) for f in frozen.tail(x)]
    return NetSpec(
        "detection", DetectionNet(frozen).eval(), (x,), ["split"], ["codes", "logits"], [{0: "batch"}],
        {"teacher_sha256": _teacher_sha(), "weights_sha256": _file_sha(getattr(head, "checkpoint_path", None)),
         "state": state_digest(head), "grid": list(grid)},
        {"ssb.feature_shapes": json.dumps(shapes), "ssb.grid": json.dumps(list(grid))})


def roi_spec(head: Any) -> NetSpec:
    """A RoI head's per-box net ``head.net`` on pooled features ``[K, C, *head.roi_size]``, K dynamic."""
    torch = require("torch", "ONNX export")
    from ssb.backbones.ssd_mobilenet_v2 import SPLIT_CHANNELS

    net = _frozen(head.net)
    roi = [int(v) for v in head.roi_size]
    x = torch.zeros(3, int(head.config.get("in_channels", SPLIT_CHANNELS)), *roi)
    with torch.no_grad():
        out = net(x)
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    names = [f"out{i}" for i in range(len(outs))]
    kind = str(getattr(head, "model_id", "") or f"roi-{type(head).__name__}")
    return NetSpec(
        kind, net, (x,), ["pooled"], names, [{0: "rois"}],
        {"model_id": getattr(head, "model_id", type(head).__name__), "config": head.config,
         "codec_sha256": getattr(head, "codec_sha256", None),
         "weights_sha256": _file_sha(getattr(head, "checkpoint_path", None)), "state": state_digest(head.net)},
        {"ssb.input_shape": json.dumps(list(x.shape[1:])), "ssb.output_shapes": json.dumps([list(o.shape[1:])
                                                                                              for o in outs]),
         "ssb.tuple_output": json.dumps(isinstance(out, (tuple, list)))})


def pixels_spec(model: Any) -> NetSpec:
    """:class:`~ssb.codec.pixels.PixelSynthesis` (split features -> RGB in [0, 1]), batch, h, w dynamic."""
    torch = require("torch", "ONNX export")
    in_ch = model.net[0].in_channels
    return NetSpec(
        "pixels", _frozen(model), (torch.zeros(2, in_ch, 38, 38),), ["split"], ["rgb"],
        [{0: "batch", 2: "height", 3: "width"}],
        {"weights_sha256": _file_sha(getattr(model, "checkpoint_path", None)), "state": state_digest(model)},
        {"ssb.in_channels": str(in_ch)})


# -- export and cache -------------------------------------------------------------------------------


def export(spec: NetSpec, path: str | Path) -> Path:
    """Export ``spec`` to ``path`` (atomically), with ``ssb.kind`` / ``ssb.key`` metadata."""
    torch = require("torch", "ONNX export")
    require("onnx", "ONNX export")
    require("onnxscript", "ONNX export (torch's dynamo exporter)")
    path = Path(path)
    dims = {}
    dynamic = tuple({axis: dims.setdefault(name, torch.export.Dim(name, min=1)) for axis, name in d.items()}
                    for d in spec.dynamic)
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(spec.module, spec.example, None, input_names=spec.input_names,
                                        output_names=spec.output_names, dynamic_shapes=dynamic, dynamo=True,
                                        opset_version=OPSET, optimize=True, verbose=False,
                                        external_data=False)
        except Exception as exc:  # exporter failures name the network
            raise MalformedFieldError(f"ONNX export of the {spec.kind} network failed: {exc}",
                                      field=f"onnx.{spec.kind}") from exc
    meta = {"ssb.kind": spec.kind, "ssb.key": spec.key, "ssb.export_version": str(EXPORT_VERSION),
            "ssb.identity": json.dumps(spec.identity, sort_keys=True, default=str), **spec.metadata}
    program.model.metadata_props.update(meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        program.save(tmp, external_data=False)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def ensure_exported(spec: NetSpec, models_dir: str | Path | None = None, *, refresh: bool = False) -> Path:
    """The cached graph of ``spec`` in ``models_dir`` (default :func:`onnx_cache_dir`), exported if absent.

    Callers check ``ssb.key`` in the file's metadata when they load it (a damaged or foreign
    file under the right name is re-exported with ``refresh=True``).  An unwritable folder gives
    a warning and a file in a temporary folder.
    """
    folder = Path(models_dir) if models_dir is not None else onnx_cache_dir()
    path = folder / spec.filename
    if path.is_file() and not refresh:
        return path
    try:
        return export(spec, path)
    except OSError as exc:
        warnings.warn(f"could not write the ONNX graph to {path}: {exc}; using a temporary folder",
                      stacklevel=2)
        return export(spec, Path(tempfile.mkdtemp(prefix="ssb-onnx-")) / spec.filename)
