"""Decoder side of ``test_video_cross_process.py``, run in a fresh process.

Usage: ``python video_cross_process_child.py THREADS IN.ssb OUT.pt``.  Builds the tiny codec and
video model from *other* random weights, loads the encoder's state dicts (saved beside IN.ssb),
and decodes every frame of the stream (a whole GOP and more) with THREADS torch threads.
"""

from __future__ import annotations

import sys

import torch
from tiny_codec import TinyModels, tiny_codec, tiny_video_coder

import ssb
from ssb.codec import registry


def decode_all(models, path: str) -> dict[str, list]:
    out: dict[str, list] = {"frames": [], "latents": [], "split": [], "motion": []}
    with ssb.open(path) as bs:
        dec = registry.decoder(bs, models)
        for step in dec.plan():
            df = dec.decode(step)
            out["frames"].append(df.frame_index)
            out["latents"].append(dec._refs[df.frame_index][0].clone())
            out["split"].append(df.features["split"])
            out["motion"].append(None if df.motion is None else torch.from_numpy(df.motion.vectors.copy()))
    return out


def main(threads: int, src: str, dst: str) -> None:
    torch.set_num_threads(threads)
    state = torch.load(src + ".state.pt")
    codec = tiny_codec(seed=9999, update=False)
    codec.load_state_dict(state["codec"])
    coder = tiny_video_coder(seed=9999)
    coder.load_state_dict(state["video"])
    models = TinyModels(codec.eval(), extra={"video": coder.eval()})
    out = decode_all(models, src)
    out["threads"] = torch.get_num_threads()
    torch.save(out, dst)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3])
