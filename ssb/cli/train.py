"""``ssb train -o DIR [--iterations N] [--seed S] [--quant soft-then-hard|noise]``: the reference-weights recipe."""

from __future__ import annotations


def add_arguments(p) -> None:
    p.add_argument("-o", "--output", required=True, help="folder for feature_codec.pt and train_log.json")
    p.add_argument("--iterations", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--quant", choices=("soft-then-hard", "noise"), default="soft-then-hard")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    from ssb.recipes.train import TrainConfig, train

    cfg = TrainConfig(iterations=args.iterations, batch_size=args.batch_size, seed=args.seed, lr=args.lr,
                      quant=args.quant, threads=args.threads)
    path = train(cfg, args.output, progress=not args.no_progress)
    print(f"wrote {path}")
    return 0
