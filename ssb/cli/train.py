"""``ssb train -o DIR [--seed S] [--quant soft-then-hard|noise] [--front timm:NAME --front-weights PATH]``,
``ssb train --task action [--data DIR|CSV] -o DIR``.

The reference-weights recipe, a codec for your own backbone (a timm ``features_only`` model), or the
action head's classifier trained on the motion units of labelled clips."""

from __future__ import annotations


from ssb.cli._common import count, positive
from ssb.errors import SSBError

FRONT_HELP = (
    "the front whose features the codec codes: ssd-mbv2.s8 (default: the COCO SSD-MobileNetV2 teacher's stride-8 "
    "split, trained with detection distillation) or timm:MODEL[:INDEX], any timm model created with "
    "features_only=True cut after feature level INDEX (default: its stride-8 level). A timm front needs "
    "--front-weights and is trained on feature fidelity only (rate + split-feature MSE, no detection "
    "distillation: --distill-iters are then fidelity iterations); its streams decode only with this codec and "
    "name the front and its weights fingerprint")


def add_arguments(p) -> None:
    p.add_argument("-o", "--output", required=True,
                   help="folder for feature_codec.pt and train_log.json (--task action: for action.pt and its log)")
    p.add_argument("--task", choices=("codec", "action"), default="codec",
                   help="what to train: the codec (default), or the action head's classifier on motion units "
                        "(python -m ssb.recipes.train_action --help for all its options)")
    p.add_argument("--data", default=None, metavar="DIR|CSV",
                   help="--task action: labelled clips, DIR/<label>/*.mp4 (the UCF-101 / HMDB-51 layout) or a CSV of "
                        "clip,label[,x0,y0,x1,y1]; default: the vtest teacher labels of the reference model")
    p.add_argument("--warmup-iters", type=count, default=3500, help="noise, rate + split-feature loss")
    p.add_argument("--distill-iters", type=count, default=800,
                   help="noise, + output distillation (behind a timm front: split-feature loss only)")
    p.add_argument("--hard-iters", type=count, default=400, help="hard rounding (or noise with --quant noise)")
    p.add_argument("--batch-size", type=positive, default=4)
    p.add_argument("--warmup-batch", type=positive, default=16, help="batch size of the warmup phase")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--quant", choices=("soft-then-hard", "noise"), default="soft-then-hard")
    p.add_argument("--threads", type=positive, default=2)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--front", default="ssd-mbv2.s8", metavar="ssd-mbv2.s8|timm:MODEL[:INDEX]", help=FRONT_HELP)
    p.add_argument("--front-weights", default=None, metavar="PATH",
                   help="with a timm front: its weights, a state dict file (torch.save(model.state_dict()) of the "
                        "timm model or of its features_only model); never downloaded. Encoding reads them again "
                        "from this path (or $SSB_FRONT_WEIGHTS) and checks their fingerprint")
    p.add_argument("--front-input-size", type=positive, default=None, metavar="N",
                   help="with a timm front: side of its square input (default: the model's pretrained_cfg size)")
    p.add_argument("--images", default=None, metavar="DIR",
                   help="train on this folder of images (each with --crops-per-photo random crops) instead of the "
                        "recipe's real frames and photos")
    p.add_argument("--frame-step", type=positive, default=2, help="every N-th training frame of vtest.avi")
    p.add_argument("--crops-per-photo", type=count, default=16, help="random crops added per photo")
    p.add_argument("--hidden", type=positive, default=None, help="codec width (default 64)")
    p.add_argument("--latent", type=positive, default=None, help="latent channels (default 64)")
    p.add_argument("--hyper", type=positive, default=None, help="hyper-latent channels (default 32)")
    p.add_argument("--name", default=None,
                   help="the codec's name in its identity (default: the reference codec's, or "
                        "omni-timm-MODEL-INDEX)")
    p.add_argument("--pixels", action="store_true",
                   help="train the pixel decoder (for people) behind frozen codec weights instead of the codec")
    p.add_argument("--codec-weights", default=None, help="with --pixels: codec weights (default: shipped)")
    p.add_argument("--pixel-iters", type=int, default=800)
    p.add_argument("--resume-soft", default=None, help="soft_state.pt of an earlier run: train only the last phase")


def torch_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def _codec_config(args):
    import dataclasses

    from ssb.codec.feature_codec import FeatureCodecConfig

    sizes = {k: getattr(args, k) for k in ("hidden", "latent", "hyper") if getattr(args, k) is not None}
    return dataclasses.replace(FeatureCodecConfig(), **sizes)


def validate(args) -> None:
    """What needs no model: the front's name and weights, the image folder, the phases."""
    from pathlib import Path

    from ssb.adapters.timm import is_timm, parse_name

    teacher = args.front == "ssd-mbv2.s8"
    if is_timm(args.front):
        parse_name(args.front)
        if not args.front_weights:
            raise SSBError(f"--front {args.front} needs --front-weights PATH: the front's weights, a state dict "
                           "file (nothing is downloaded)", field="--front-weights")
        if not Path(args.front_weights).is_file():
            raise SSBError(f"no front weights at {args.front_weights}", field="--front-weights")
    elif args.front_weights or args.front_input_size:
        raise SSBError(f"--front-weights and --front-input-size are for a timm front, not {args.front}",
                       field="--front-weights")
    if args.pixels and not teacher:
        raise SSBError("--pixels trains the pixel decoder behind the teacher's codec; it takes no --front",
                       field="--front")
    if args.images is not None and not Path(args.images).is_dir():
        raise SSBError(f"--images must be a folder of images, got {args.images}", field="--images")
    if not args.pixels and args.warmup_iters + args.distill_iters + args.hard_iters < 1:
        raise SSBError("nothing to train: every phase has 0 iterations", field="--warmup-iters")


def run(args) -> int:
    if args.task == "action":
        from ssb.recipes.train_action import main as train_action

        return train_action(["-o", args.output, "--seed", str(args.seed)]
                            + (["--data", args.data] if args.data else [])
                            + (["--codec-weights", args.codec_weights] if args.codec_weights else [])
                            + (["--no-progress"] if args.no_progress else []))
    if args.data is not None:
        raise SSBError("--data is for --task action", field="--data")
    validate(args)
    from ssb.recipes.train import TrainConfig, train

    cfg = TrainConfig(warmup_iters=args.warmup_iters, distill_iters=args.distill_iters,
                      hard_iters=args.hard_iters, batch_size=args.batch_size, warmup_batch=args.warmup_batch,
                      seed=args.seed, lr=args.lr, quant=args.quant, threads=args.threads,
                      frame_step=args.frame_step, crops_per_photo=args.crops_per_photo, codec=_codec_config(args),
                      front=args.front, front_weights=args.front_weights, front_input_size=args.front_input_size,
                      images=args.images, name=args.name)
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
