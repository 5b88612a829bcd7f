"""Entropy coding layer: learned priors, integer tables, exact hyper-synthesis, constriction ANS.

Contract (CompressAI-like, but exact across processes, threads and machines):

* train with ``forward`` (``quant_mode`` ``"noise"`` | ``"ste"`` | ``"hard"``),
* call ``update()`` once: integer tables (and integer network weights, ``freeze()``) go to
  registered buffers saved in ``state_dict``,
* ``compress`` / ``decompress`` read only those integers; payload formats are documented in
  :mod:`ssb.entropy.coding`, table layout in :mod:`ssb.entropy.tables`, the exactness
  argument of the integer network in :mod:`ssb.entropy.exact`.

Requires the ``codec`` extra (torch, constriction).
"""

from ssb._optional import require

require("torch", "the entropy models (ssb.entropy)")
require("constriction", "entropy coding (ssb.entropy)")

from ssb.entropy.base import EntropyModel, TablesNotReadyError  # noqa: E402
from ssb.entropy.bottleneck import EntropyBottleneck  # noqa: E402
from ssb.entropy.coding import MAX_SYMBOLS, decode_integers, encode_integers  # noqa: E402
from ssb.entropy.exact import (  # noqa: E402
    ACC_LIMIT,
    ExactSequential,
    IntegerConv2d,
    IntegerConvTranspose2d,
    fake_quantize,
)
from ssb.entropy.gaussian import GaussianConditional, default_scale_table  # noqa: E402
from ssb.entropy.quantization import QUANT_MODES, QuantMode, lower_bound, quantize  # noqa: E402
from ssb.entropy.tables import (  # noqa: E402
    MAX_ABS_VALUE,
    MAX_TABLE_LENGTH,
    PRECISION,
    CodingTables,
    quantize_pmf,
)

__all__ = [
    "EntropyModel",
    "EntropyBottleneck",
    "GaussianConditional",
    "default_scale_table",
    "TablesNotReadyError",
    "IntegerConv2d",
    "IntegerConvTranspose2d",
    "ExactSequential",
    "fake_quantize",
    "ACC_LIMIT",
    "QUANT_MODES",
    "QuantMode",
    "quantize",
    "lower_bound",
    "CodingTables",
    "quantize_pmf",
    "encode_integers",
    "decode_integers",
    "PRECISION",
    "MAX_SYMBOLS",
    "MAX_ABS_VALUE",
    "MAX_TABLE_LENGTH",
]
