"""``ssb train -o DIR [--iterations N] [--seed S] [--quant soft-then-hard|noise]``: the reference-weights recipe."""

from __future__ import annotations


def add_arguments(p) -> None:
    p.add_argument("-o", "--output", required=True, help="folder for feature_codec.pt and train_log.json")
    p.add_argument("--warmup-iters", type=int, default=3500, help="noise, rate + split-feature loss")
    p.add_argument("--distill-iters", type=int, default=800, help="noise, + output distillation")
    p.add_argument("--hard-iters", type=int, default=400, help="hard rounding (or noise with --quant noise)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--quant", choices=("soft-then-hard", "noise"), default="soft-then-hard")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--pixels", action="store_true",
                   help="train the pixel decoder (for people) behind frozen codec weights instead of the codec")
    p.add_argument("--codec-weights", default=None, help="with --pixels: codec weights (default: shipped)")
    p.add_argument("--pixel-iters", type=int, default=800)
    p.add_argument("--resume-soft", default=None, help="soft_state.pt of an earlier run: train only the last phase")


def torch_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def run(args) -> int:
    from ssb.recipes.train import TrainConfig, train

    cfg = TrainConfig(warmup_iters=args.warmup_iters, distill_iters=args.distill_iters,
                      hard_iters=args.hard_iters, batch_size=args.batch_size, seed=args.seed, lr=args.lr,
                      quant=args.quant, threads=args.threads)
    if args.pixels:
        from ssb.codec import zoo
        from ssb.recipes.train_pixels import train_pixels

        torch_threads(args.threads)
        path = train_pixels(cfg, zoo.load("codec", args.codec_weights), args.output, iterations=args.pixel_iters,
                            batch_size=args.batch_size, progress=not args.no_progress)
        print(f"wrote {path}")
        return 0
    path = train(cfg, args.output, progress=not args.no_progress, resume_soft=args.resume_soft)
    print(f"wrote {path}")
    return 0
