"""The per-frame numbers of the action head (:mod:`ssb.tasks.action`): what a window holds (numpy only).

Per frame and object, :data:`MOTION_FEATURES` numbers from the decoded motion (:func:`motion_features`;
:func:`flow_features` computes the same from a dense optical flow, the upper reference on the
pixels) and :data:`BOX_FEATURES` from the index boxes (:func:`box_features`).  Displacements are
in body heights per second (divided by the box height, times the frame rate; :data:`DEFAULT_FPS`
when the stream has none).
"""

from __future__ import annotations

import numpy as np

__all__ = ["motion_features", "flow_features", "box_features", "band_pool", "MOTION_FEATURES", "BOX_FEATURES",
           "BANDS", "DEFAULT_FPS"]

#: rows x columns of the box grid the motion is pooled over
BANDS = (3, 2)
#: numbers per frame from the motion (per band: dx, dy, moving share; whole box: dx, dy, share)
MOTION_FEATURES = 3 * BANDS[0] * BANDS[1] + 3
#: numbers per frame from the index boxes (centre velocity x, y, log-height rate, log aspect)
BOX_FEATURES = 4
#: frame rate assumed when the stream says none
DEFAULT_FPS = 10.0


def _overlaps(a: np.ndarray, b: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``[len(a), len(edges) - 1]``: length of each interval ``[a_i, b_i]`` inside each cell of ``edges``."""
    return np.clip(np.minimum(b[:, None], edges[None, 1:]) - np.maximum(a[:, None], edges[None, :-1]), 0.0, None)


def band_pool(values: np.ndarray, moving: np.ndarray, y_edges: np.ndarray, x_edges: np.ndarray, box,
              bands: tuple[int, int] = BANDS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Area-weighted pooling of a field over a box cut in ``bands`` (rows, columns).

    ``values`` ``[2, R, K]`` (dx, dy per cell), ``moving`` ``[R, K]`` bool, cell ``(i, j)`` spanning
    ``y_edges[i]..y_edges[i+1]`` x ``x_edges[j]..x_edges[j+1]`` (frame pixels).  Returns the per-band
    mean ``[2, rows, cols]`` and moving share ``[rows, cols]`` (zero where a band covers no cell),
    and the whole box's mean over its moving cells and their share ``[3]``.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    rows, cols = bands
    ya = y0 + (y1 - y0) * np.arange(rows) / rows
    xa = x0 + (x1 - x0) * np.arange(cols) / cols
    wy = _overlaps(ya, ya + (y1 - y0) / rows, y_edges)  # [rows, R]
    wx = _overlaps(xa, xa + (x1 - x0) / cols, x_edges)  # [cols, K]
    area = wy.sum(1)[:, None] * wx.sum(1)[None, :]
    m = moving.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.einsum("ar,crk,bk->cab", wy, values, wx) / area
        share = np.einsum("ar,rk,bk->ab", wy, m, wx) / area
    mean, share = np.nan_to_num(mean), np.nan_to_num(share)
    w = np.outer(wy.sum(0), wx.sum(0)) * m  # whole-box weights of the moving cells
    total = w.sum()
    whole = np.zeros(3)
    if total > 0:
        whole[:2] = np.einsum("rk,crk->c", w, values) / total
        whole[2] = total / max(float(np.outer(wy.sum(0), wx.sum(0)).sum()), 1e-12)
    return mean, share, whole


def _flatten(mean: np.ndarray, share: np.ndarray, whole: np.ndarray, height: float, rate: float) -> np.ndarray:
    scale = rate / max(height, 1.0)
    per_band = np.concatenate([mean * scale, share[None]], axis=0)  # [3, rows, cols]
    return np.concatenate([per_band.transpose(1, 2, 0).reshape(-1), [whole[0] * scale, whole[1] * scale, whole[2]]]
                          ).astype(np.float32)


def motion_features(motion, box, fps: float | None = None) -> np.ndarray:
    """The motion part (:data:`MOTION_FEATURES` numbers) of a box from a decoded
    :class:`~ssb.codec.video.MotionField` (``None``: zeros)."""
    if motion is None:
        return np.zeros(MOTION_FEATURES, dtype=np.float32)
    h, w = motion.frame_size
    rows, cols = motion.vectors.shape[1:]
    ch, cw = h * motion.stride / motion.input_size, w * motion.stride / motion.input_size
    y_edges = (motion.row0 + np.arange(rows + 1)) * ch
    x_edges = (motion.col0 + np.arange(cols + 1)) * cw
    forward = -motion.pixels()  # the content's motion from the reference to this frame
    mean, share, whole = band_pool(forward, motion.moving, y_edges, x_edges, box)
    return _flatten(mean, share, whole, float(box[3]) - float(box[1]), fps or DEFAULT_FPS)


def flow_features(flow: np.ndarray, box, fps: float | None = None, *, input_size: int = 300) -> np.ndarray:
    """The same numbers as :func:`motion_features` from a dense backward optical flow ``[H, W, 2]``
    (OpenCV's ``calc(current, previous)``, frame pixels): the upper reference on the pixels."""
    h, w = flow.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in box)
    ia, ib = int(np.clip(np.floor(y0), 0, h - 1)), int(np.clip(np.ceil(y1), 1, h))
    ja, jb = int(np.clip(np.floor(x0), 0, w - 1)), int(np.clip(np.ceil(x1), 1, w))
    ib, jb = max(ib, ia + 1), max(jb, ja + 1)
    crop = -flow[ia:ib, ja:jb].astype(np.float64).transpose(2, 0, 1)
    # the MOTION units' stillness rule, per pixel: both components under half a teacher-input pixel
    moving = (np.abs(crop[0]) >= 0.5 * w / input_size) | (np.abs(crop[1]) >= 0.5 * h / input_size)
    mean, share, whole = band_pool(crop, moving, np.arange(ia, ib + 1, dtype=np.float64),
                                   np.arange(ja, jb + 1, dtype=np.float64), box)
    return _flatten(mean, share, whole, y1 - y0, fps or DEFAULT_FPS)


def box_features(box, prev_box, gap: int, fps: float | None = None) -> np.ndarray:
    """The index part (:data:`BOX_FEATURES` numbers): centre velocity and log-height rate since
    ``prev_box`` (``gap`` frames before; zeros when there is none), log aspect."""
    x0, y0, x1, y1 = (float(v) for v in box)
    h, w = max(y1 - y0, 1.0), max(x1 - x0, 1.0)
    out = np.zeros(BOX_FEATURES, dtype=np.float32)
    out[3] = np.log(w / h)
    if prev_box is not None and gap >= 1:
        px0, py0, px1, py1 = (float(v) for v in prev_box)
        rate = (fps or DEFAULT_FPS) / gap
        out[0] = ((x0 + x1) - (px0 + px1)) / 2 / h * rate
        out[1] = ((y0 + y1) - (py0 + py1)) / 2 / h * rate
        out[2] = np.log(h / max(py1 - py0, 1.0)) * rate
    return out
