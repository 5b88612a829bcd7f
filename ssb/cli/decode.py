"""``ssb decode FILE.ssb -o OUT.png``: pixels for people.

The reference model codes the teacher's split features for machines; it has no pixel
synthesis yet, so this command refuses clearly instead of producing a fake picture.
"""

from __future__ import annotations

from ssb.errors import SSBError


def add_arguments(p) -> None:
    p.add_argument("file", help="SSB file")
    p.add_argument("-o", "--output", required=True, help="PNG to write")
    p.add_argument("--classes", default=None, help="render only these classes' groups")


def run(args) -> int:
    import ssb

    with ssb.open(args.file) as bs:
        model = (bs.header.metadata or {}).get("model", "?")
    raise SSBError(
        f"{args.file} holds machine features only (model {model}): it has no pixel layer to reconstruct; "
        "pixel reconstruction for people arrives with the group codec (group units carry their own pixel layer)",
        field="decode",
    )
