"""``ssb codecs``: the stream codecs, task heads and published models this installation has."""

from __future__ import annotations


def add_arguments(p) -> None:
    pass


def run(args) -> int:
    from ssb.codec import registry, zoo
    from ssb.tasks import list_tasks

    print("stream codecs (ssb encode --codec):")
    for name in registry.list_codecs():
        doc = registry.BUILTIN.get(name, ("", "", "third-party (entry point)"))[2]
        print(f"  {name:<14} {doc}")
    print("task heads (ssb analyze --task):")
    for name in list_tasks():
        print(f"  {name}")
    print("published models (ssb.codec.zoo):")
    for card in zoo.ZOO.values():
        behind = f", trained behind {card.behind}" if card.behind else ""
        print(f"  {card.id:<28} {card.kind}{behind}")
    return 0
