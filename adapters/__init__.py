"""Framework bridges and evaluation building blocks (installed as ``ssb.adapters``).

* :mod:`ssb.adapters.coco` - detectron2 ``BoxMode``, COCO results JSON, teacher
  predictions as COCO ground truth, ``COCOEvaluator`` (pycocotools mAP).
* :mod:`ssb.adapters.pixel_codecs` - JPEG / WebP / AVIF / PNG baselines through Pillow.
* :mod:`ssb.adapters.torchvision` - torchvision training targets and ``BackboneAdapter``.

Importing this package or its submodules imports neither torch, Pillow nor pycocotools;
each is loaded when a function needs it.
"""
