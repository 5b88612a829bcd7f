"""Well-known label sets, named by registered ids so a stream never spells them out.

A stream's sequence metadata says ``"labels": "coco"`` instead of carrying 91 names; any reader
(this module is standard library only) turns the id back into names.  A stream with its own
classes carries ``"classes": {"<id>": "<name>"}`` instead (or as well: explicit names win).

``coco``: COCO category ids and names as in the TF Object Detection API label map (ids 1..90).
The teacher predicts 91 classes: index 0 is background and index ``k`` is COCO category id
``k``.  Eighty ids are annotated in COCO; the ten others (:data:`COCO_UNANNOTATED_IDS`) come
from the COCO paper's original 91-category list, have no training boxes, and are kept only so
every teacher output index has a name.  Standard library only.
"""

from __future__ import annotations

__all__ = [
    "LABEL_SETS",
    "label_names",
    "class_id",
    "COCO_CATEGORIES",
    "COCO_UNANNOTATED_IDS",
    "COCO_EVAL_IDS",
    "category_name",
    "coco_categories_json",
]

#: COCO category id -> name, for all 90 ids the teacher can output.
COCO_CATEGORIES: dict[int, str] = {
    1: "person", 2: "bicycle", 3: "car", 4: "motorcycle", 5: "airplane", 6: "bus", 7: "train",
    8: "truck", 9: "boat", 10: "traffic light", 11: "fire hydrant", 12: "street sign",
    13: "stop sign", 14: "parking meter", 15: "bench", 16: "bird", 17: "cat", 18: "dog",
    19: "horse", 20: "sheep", 21: "cow", 22: "elephant", 23: "bear", 24: "zebra", 25: "giraffe",
    26: "hat", 27: "backpack", 28: "umbrella", 29: "shoe", 30: "eye glasses", 31: "handbag",
    32: "tie", 33: "suitcase", 34: "frisbee", 35: "skis", 36: "snowboard", 37: "sports ball",
    38: "kite", 39: "baseball bat", 40: "baseball glove", 41: "skateboard", 42: "surfboard",
    43: "tennis racket", 44: "bottle", 45: "plate", 46: "wine glass", 47: "cup", 48: "fork",
    49: "knife", 50: "spoon", 51: "bowl", 52: "banana", 53: "apple", 54: "sandwich",
    55: "orange", 56: "broccoli", 57: "carrot", 58: "hot dog", 59: "pizza", 60: "donut",
    61: "cake", 62: "chair", 63: "couch", 64: "potted plant", 65: "bed", 66: "mirror",
    67: "dining table", 68: "window", 69: "desk", 70: "toilet", 71: "door", 72: "tv",
    73: "laptop", 74: "mouse", 75: "remote", 76: "keyboard", 77: "cell phone", 78: "microwave",
    79: "oven", 80: "toaster", 81: "sink", 82: "refrigerator", 83: "blender", 84: "book",
    85: "clock", 86: "vase", 87: "scissors", 88: "teddy bear", 89: "hair drier", 90: "toothbrush",
}  # fmt: skip

#: Ids of the 2014 COCO paper's list that the released annotations never use.
COCO_UNANNOTATED_IDS: frozenset[int] = frozenset({12, 26, 29, 30, 45, 66, 68, 69, 71, 83})
#: The 80 annotated ids, ascending (the categories of COCO evaluation).
COCO_EVAL_IDS: tuple[int, ...] = tuple(i for i in sorted(COCO_CATEGORIES) if i not in COCO_UNANNOTATED_IDS)


def category_name(category_id: int) -> str:
    """Name of a COCO category id; ``"id<k>"`` for an id outside 1..90."""
    return COCO_CATEGORIES.get(int(category_id), f"id{int(category_id)}")


def coco_categories_json(*, annotated_only: bool = True) -> list[dict]:
    """The ``categories`` list of a COCO annotation file (``id`` and ``name`` of each category)."""
    ids = COCO_EVAL_IDS if annotated_only else tuple(sorted(COCO_CATEGORIES))
    return [{"id": i, "name": COCO_CATEGORIES[i]} for i in ids]


#: Registered label sets: id -> {class id: name}. Published ids never change meaning.
LABEL_SETS: dict[str, dict[int, str]] = {"coco": COCO_CATEGORIES}


def label_names(metadata) -> dict[int, str]:
    """Class id -> name for a stream's sequence metadata (``labels`` set and/or ``classes``)."""
    names: dict[int, str] = {}
    if not isinstance(metadata, dict):
        return names
    registered = LABEL_SETS.get(metadata.get("labels")) if isinstance(metadata.get("labels"), str) else None
    if registered:
        names.update(registered)
    classes = metadata.get("classes")
    if isinstance(classes, dict):
        for key, name in classes.items():
            try:
                names[int(key)] = str(name)
            except (TypeError, ValueError):
                continue
    elif isinstance(classes, list):
        names.update({i: str(n) for i, n in enumerate(classes) if n is not None})
    return names


def class_id(value, names: dict[int, str], field: str = "classes") -> int:
    """A class id from an id (int or digit string) or a name of ``names``; clear error otherwise."""
    from ssb.errors import MalformedFieldError

    if isinstance(value, bool):
        raise MalformedFieldError(f"class {value!r} is neither an id nor a name", field=field)
    if isinstance(value, int):
        return value
    if hasattr(value, "__index__"):
        return int(value.__index__())
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    for cid, name in names.items():
        if name == text:
            return cid
    known = ", ".join(sorted(set(names.values()))[:12])
    raise MalformedFieldError(f"unknown class {text!r}" + (f" (known: {known}, ...)" if known else
                              " (the stream names no classes)"), field=field)
