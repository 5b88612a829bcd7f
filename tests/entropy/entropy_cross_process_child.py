"""Decoder side of ``test_entropy_cross_process.py``, run in a fresh process.

Usage: ``python entropy_cross_process_child.py THREADS IN.pt OUT.pt``.  Builds the modules with
*other* random weights, loads the encoder's ``state_dict`` (integer tables and integer network
weights), decodes both payloads with ``THREADS`` torch threads, and re-encodes them.
"""

from __future__ import annotations

import sys

import torch

from ssb.entropy import (
    EntropyBottleneck,
    ExactSequential,
    GaussianConditional,
    IntegerConv2d,
    IntegerConvTranspose2d,
)

N_Z, N_Y = 4, 6  # channels of the hyper-latent z and of the latent y


def build(seed: int) -> dict[str, torch.nn.Module]:
    """A miniature scale hyperprior: factorized prior on z, exact hyper-synthesis, Gaussian on y."""
    torch.manual_seed(seed)
    gc = GaussianConditional()
    hs = ExactSequential(
        IntegerConvTranspose2d(N_Z, 8, 5, 2, 2, 1, relu=True, out_frac_bits=4),
        IntegerConvTranspose2d(8, 8, 5, 2, 2, 1, relu=True, out_frac_bits=4),
        IntegerConv2d(8, N_Y, 3, 1, 1, relu=True, out_frac_bits=gc.scale_code_bits),
    )
    with torch.no_grad():  # scales from ~0.1 to ~60, so that many tables are used
        hs.layers[-1].bias.uniform_(0.0, 60.0)
    return {"eb": EntropyBottleneck(N_Z), "gc": gc, "hs": hs}


def decode(m: dict, z_data: bytes, y_data: bytes, z_shape) -> dict[str, torch.Tensor]:
    z_hat = m["eb"].decompress(z_data, z_shape)
    codes = m["hs"].codes(z_hat)
    indexes = m["gc"].build_indexes(codes)
    return {"z_hat": z_hat, "codes": codes, "indexes": indexes, "y_hat": m["gc"].decompress(y_data, indexes)}


def main(threads: int, src: str, dst: str) -> None:
    torch.set_num_threads(threads)
    blob = torch.load(src)
    modules = build(seed=12345)
    for name, module in modules.items():
        module.load_state_dict(blob["state"][name])
    out = decode(modules, blob["z_data"], blob["y_data"], blob["z_shape"])
    out["z_data"] = modules["eb"].compress(out["z_hat"])
    out["y_data"] = modules["gc"].compress(out["y_hat"], out["indexes"])
    out["threads"] = torch.get_num_threads()
    torch.save(out, dst)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3])
