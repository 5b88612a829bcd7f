"""Entropy-coding throughput and rate overhead of ``ssb.entropy``, measured in one run.

For the EntropyBottleneck and the GaussianConditional it reports, on the same symbols:

* encode / decode throughput (symbols/s) of ``compress`` / ``decompress`` (everything: rounding,
  table grouping, escapes, byte conversion) against the **baseline** "raw constriction": the
  same pre-grouped int32 symbols pushed through the same prebuilt ``Categorical`` models with
  ``AnsCoder`` and nothing else (ratio = ours / raw, 1.0 means no overhead);
* for the Gaussian, two other constriction ways to code per-symbol distributions: the
  ``QuantizedGaussian`` family (float mean/std per symbol) and the batched ``Categorical``
  family (one probability row per symbol, shape ``(N, K)``; on a subset, it needs N x K floats);
* bits / ideal: payload bits over ``-sum(log2 p)`` with ``p`` the model's float likelihoods
  (what training optimizes) and with ``p`` the integer table probabilities (coder overhead);
* the exact integer hyper-synthesis against its float (fake-quantized) forward.

Run: ``python benchmarks/bench_entropy.py [--threads 1] [--size 64] [--repeat 3]``
Synthetic latents (Laplace / Gaussian with random scales): this measures the coder, not a codec.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import time

import constriction
import numpy as np
import torch

from ssb.entropy import (
    PRECISION,
    EntropyBottleneck,
    ExactSequential,
    GaussianConditional,
    IntegerConv2d,
    IntegerConvTranspose2d,
)


def _best(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _raw_constriction(symbols: np.ndarray, ids: np.ndarray, tables, repeat: int) -> tuple[float, float]:
    """Seconds to encode / decode pre-grouped int32 symbols with the prebuilt models only."""
    order = np.argsort(ids, kind="stable")
    grouped = symbols[order].astype(np.int32)
    bounds = np.concatenate([[0], np.cumsum(np.bincount(ids, minlength=tables.num_tables))])
    models = [tables.model(t) for t in range(tables.num_tables)]
    runs = [(models[t], a, b) for t, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])) if b > a]

    def enc():
        coder = constriction.stream.stack.AnsCoder()
        for model, a, b in reversed(runs):
            coder.encode_reverse(grouped[a:b], model)
        return coder.get_compressed()

    t_enc, words = _best(enc, repeat)

    def dec():
        coder = constriction.stream.stack.AnsCoder(words)
        return [coder.decode(model, int(b - a)) for model, a, b in runs]

    t_dec, _ = _best(dec, repeat)
    return t_enc, t_dec


def _table_bits(symbols: np.ndarray, ids: np.ndarray, tables) -> float:
    """Ideal bits under the integer tables (escape payload bits not included)."""
    sym = np.minimum(np.maximum(symbols, 0), tables.lengths[ids] - 1)
    freq = tables.pmf[ids, sym].astype(np.float64)
    return float(np.sum(PRECISION - np.log2(freq)))


def _symbols(values: np.ndarray, ids: np.ndarray, tables) -> np.ndarray:
    sym = values - tables.offsets[ids]
    escape = tables.lengths[ids] - 1
    return np.where((sym < 0) | (sym >= escape), escape, sym)


def _row(name: str, n: int, t_enc: float, t_dec: float, raw: tuple[float, float] | None = None) -> str:
    line = f"  {name:<38} enc {n / t_enc / 1e6:7.2f} M sym/s   dec {n / t_dec / 1e6:7.2f} M sym/s"
    if raw is not None:
        line += f"   (ours/raw: enc {raw[0] / t_enc:.2f}x, dec {raw[1] / t_dec:.2f}x)"
    return line


def bench_bottleneck(size: int, channels: int, repeat: int) -> None:
    torch.manual_seed(0)
    eb = EntropyBottleneck(channels)
    t_update, _ = _best(lambda: eb.update(force=True), 1)
    z = torch.distributions.Laplace(0.0, 3.0).sample((1, channels, size, size))
    n = z.numel()
    t_enc, data = _best(lambda: eb.compress(z), repeat)
    t_dec, z_hat = _best(lambda: eb.decompress(data, z.shape), repeat)
    assert torch.equal(z_hat, torch.round(z))
    tables = eb.coding_tables()
    values = torch.round(z).numpy().astype(np.int64).ravel()
    ids = eb._table_ids(z.shape)
    sym = _symbols(values, ids, tables)
    raw = _raw_constriction(sym, ids, tables, repeat)
    with torch.no_grad():
        _, lik = eb(z, quant_mode="hard")
    ideal = float(-torch.log2(lik.double()).sum())
    print(f"EntropyBottleneck: {channels} channels, z {tuple(z.shape)} = {n} symbols, "
          f"update() {t_update:.2f} s")
    print(_row("ssb compress/decompress", n, t_enc, t_dec, raw))
    print(_row("raw constriction (same models)", n, *raw))
    print(f"  bits {8 * len(data)}  /ideal(float likelihoods) {8 * len(data) / ideal:.4f}"
          f"  /ideal(integer tables) {8 * len(data) / _table_bits(sym, ids, tables):.4f}"
          f"  ({8 * len(data) / n:.3f} bits/symbol)")


def bench_gaussian(size: int, channels: int, repeat: int) -> None:
    gc = GaussianConditional()
    t_update, _ = _best(lambda: gc.update(force=True), 1)
    g = torch.Generator().manual_seed(0)
    shape = (1, channels, size, size)
    scales = torch.exp(torch.empty(shape).uniform_(np.log(0.11), np.log(64.0), generator=g))
    y = torch.randn(shape, generator=g) * scales
    n = y.numel()
    indexes = gc.build_indexes(gc.quantize_scales(scales))
    t_enc, data = _best(lambda: gc.compress(y, indexes), repeat)
    t_dec, y_hat = _best(lambda: gc.decompress(data, indexes), repeat)
    assert torch.equal(y_hat, torch.round(y))
    tables = gc.coding_tables()
    values = torch.round(y).numpy().astype(np.int64).ravel()
    ids = indexes.numpy().ravel()
    sym = _symbols(values, ids, tables)
    raw = _raw_constriction(sym, ids, tables, repeat)
    with torch.no_grad():
        _, lik = gc(y, scales, quant_mode="hard")
    ideal = float(-torch.log2(lik.double()).sum())
    print(f"GaussianConditional: {len(gc.scale_table)} tables, y {shape} = {n} symbols, "
          f"update() {t_update:.2f} s")
    print(_row("ssb compress/decompress", n, t_enc, t_dec, raw))
    print(_row("raw constriction (same models)", n, *raw))

    # constriction's float QuantizedGaussian family (per-symbol std, no table lookup)
    bound = int(np.abs(values).max()) + 1
    family = constriction.stream.model.QuantizedGaussian(-bound, bound)
    means = np.zeros(n, dtype=np.float64)
    stds = scales.numpy().astype(np.float64).ravel()
    v32 = values.astype(np.int32)

    def qg_enc():
        coder = constriction.stream.stack.AnsCoder()
        coder.encode_reverse(v32, family, means, stds)
        return coder.get_compressed()

    t_qe, words = _best(qg_enc, repeat)
    t_qd, _ = _best(lambda: constriction.stream.stack.AnsCoder(words).decode(family, means, stds), repeat)
    print(_row("constriction QuantizedGaussian family", n, t_qe, t_qd)
          + f"   bits {32 * len(words)} (float stds: not table-exact)")

    # batched Categorical family: one probability row per symbol (subset: N x K floats)
    m = min(n, 20000)
    k_max = tables.pmf.shape[1]
    probs = (tables.pmf[ids[:m]] - 1).astype(np.float64)  # rows padded with -1 beyond the table: clip
    probs = np.maximum(probs, 0.0)
    batched = constriction.stream.model.Categorical(perfect=False)
    s32 = sym[:m].astype(np.int32)

    def cat_enc():
        coder = constriction.stream.stack.AnsCoder()
        coder.encode_reverse(s32, batched, probs)
        return coder.get_compressed()

    t_ce, words = _best(cat_enc, repeat)
    t_cd, _ = _best(lambda: constriction.stream.stack.AnsCoder(words).decode(batched, probs), repeat)
    print(_row(f"constriction Categorical (N,K={k_max})", m, t_ce, t_cd) + f"   on {m} symbols")
    print(f"  bits {8 * len(data)}  /ideal(float likelihoods) {8 * len(data) / ideal:.4f}"
          f"  /ideal(integer tables) {8 * len(data) / _table_bits(sym, ids, tables):.4f}"
          f"  ({8 * len(data) / n:.3f} bits/symbol)")


def bench_exact(size: int, repeat: int) -> None:
    torch.manual_seed(0)
    n_z, n_y = 128, 192
    hs = ExactSequential(
        IntegerConvTranspose2d(n_z, n_z, 5, 2, 2, 1, relu=True, out_frac_bits=4),
        IntegerConvTranspose2d(n_z, n_z, 5, 2, 2, 1, relu=True, out_frac_bits=4),
        IntegerConv2d(n_z, n_y, 3, 1, 1, relu=True, out_frac_bits=8),
    )
    z_hat = torch.round(torch.randn(1, n_z, size // 4, size // 4) * 3)
    def plain_float(x):  # the same convolutions in float32, no quantization: the non-exact baseline
        for layer in hs.layers:
            x = layer._conv(x, layer.weight, layer.bias)
            x = torch.relu(x) if layer.relu else x
        return x

    with torch.no_grad():
        t_plain, _ = _best(lambda: plain_float(z_hat), repeat)
        t_fake, _ = _best(lambda: hs(z_hat), repeat)
        hs.freeze()
        t_exact, codes = _best(lambda: hs.codes(z_hat), repeat)
    print(f"Exact hyper-synthesis {n_z}->{n_y} channels, z {tuple(z_hat.shape)} -> {tuple(codes.shape)}:")
    print(f"  plain float32 {t_plain * 1e3:.1f} ms, fake-quant (training) {t_fake * 1e3:.1f} ms, "
          f"exact integer in float64 {t_exact * 1e3:.1f} ms  "
          f"(exact / plain float32: {t_exact / t_plain:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--size", type=int, default=64, help="latent height/width")
    parser.add_argument("--channels", type=int, default=192)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, constriction {importlib.metadata.version('constriction')}, "
          f"{args.threads} thread(s), best of {args.repeat}")
    bench_bottleneck(args.size // 4, args.channels, args.repeat)
    bench_gaussian(args.size, args.channels, args.repeat)
    bench_exact(args.size, args.repeat)


if __name__ == "__main__":
    main()
