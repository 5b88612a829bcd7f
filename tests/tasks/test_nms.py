"""tasks/nms.py against torchvision.ops (the reference), on random and adversarial box sets."""

from __future__ import annotations

import pytest
import torch

from ssb.tasks.nms import batched_nms, nms

tv_ops = pytest.importorskip("torchvision.ops")


def _boxes(gen, n, spread=1.0):
    xy = torch.rand(n, 2, generator=gen) * spread
    wh = torch.rand(n, 2, generator=gen) * 0.3 * spread + 1e-3
    return torch.cat([xy, xy + wh], dim=1)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("thr", [0.3, 0.45, 0.6])
def test_same_boxes_kept_as_torchvision(seed, thr):
    gen = torch.Generator().manual_seed(seed)
    n = 50 + 100 * seed
    boxes, scores = _boxes(gen, n), torch.rand(n, generator=gen)
    classes = torch.randint(0, 5, (n,), generator=gen)
    assert torch.equal(nms(boxes, scores, thr), tv_ops.nms(boxes, scores, thr))
    assert torch.equal(batched_nms(boxes, scores, classes, thr), tv_ops.batched_nms(boxes, scores, classes, thr))


def test_edge_cases():
    empty = torch.zeros(0, 4)
    assert nms(empty, torch.zeros(0), 0.5).numel() == 0
    assert batched_nms(empty, torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5).numel() == 0
    same = torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 3)
    assert nms(same, torch.tensor([0.1, 0.9, 0.5]), 0.5).tolist() == [1]
    # two classes at the same place are both kept; degenerate (zero-area) boxes never suppress
    assert sorted(batched_nms(same[:2], torch.tensor([0.9, 0.8]), torch.tensor([0, 1]), 0.5).tolist()) == [0, 1]
    flat = torch.tensor([[0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0]])
    assert nms(flat, torch.tensor([0.9, 0.8]), 0.5).tolist() == [0, 1] == tv_ops.nms(flat, torch.tensor([0.9, 0.8]), 0.5).tolist()
