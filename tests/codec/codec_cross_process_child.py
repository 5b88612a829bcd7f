"""Decoder side of ``test_codec_cross_process.py``, run in a fresh process.

Usage: ``python codec_cross_process_child.py THREADS IN.pt OUT.pt``.  Builds the tiny codec with
*other* random weights, loads the encoder's ``state_dict``, and with ``THREADS`` torch threads:
parses each BASE payload, decodes the split features, re-codes the decoded symbols, and
compresses the original inputs again.
"""

from __future__ import annotations

import sys

import torch
from tiny_codec import tiny_codec

from ssb.codec.payload import pack_features, unpack_features


def symbols(codec, item) -> dict[str, torch.Tensor]:
    """The decoded hyper-latent, the table indexes the integer hyper-synthesis picks, the latent."""
    z_hat = codec.entropy_bottleneck.decompress(item.z, (1, codec.config.hyper, *item.hyper_hw))
    indexes = codec.gaussian_conditional.build_indexes(codec.h_s.scale_codes(z_hat, item.latent_hw))
    y_hat = codec.gaussian_conditional.decompress(item.y, indexes)
    return {"z_hat": z_hat, "indexes": indexes, "y_hat": y_hat}


def decode_all(codec, payloads: list[bytes]) -> dict[str, list]:
    out: dict[str, list] = {"split": [], "z_hat": [], "indexes": [], "y_hat": [], "recoded": []}
    for payload in payloads:
        item = unpack_features(payload, ctx={"levels": codec.config.num_levels})
        out["split"].append(codec.decompress(item))
        sym = symbols(codec, item)
        for key, value in sym.items():
            out[key].append(value)
        out["recoded"].append((codec.entropy_bottleneck.compress(sym["z_hat"]),
                               codec.gaussian_conditional.compress(sym["y_hat"], sym["indexes"])))
    return out


def main(threads: int, src: str, dst: str) -> None:
    torch.set_num_threads(threads)
    blob = torch.load(src)
    codec = tiny_codec(seed=9999, update=False)
    codec.load_state_dict(blob["state"])
    codec.eval()
    out = decode_all(codec, blob["payloads"])
    out["reencoded"] = [pack_features(item) for x, level in blob["inputs"] for item in codec.compress(x, level)]
    out["threads"] = torch.get_num_threads()
    torch.save(out, dst)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3])
