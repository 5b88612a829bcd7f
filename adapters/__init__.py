"""Framework bridges and evaluation building blocks (installed as ``ssb.adapters``).

* :mod:`ssb.adapters.coco` - COCO results JSON, teacher predictions as COCO ground truth.
* :mod:`ssb.adapters.rle` - COCO run-length encoding of masks (numpy; no pycocotools).
* :mod:`ssb.adapters.detectron2` - detectron2 ``BoxMode``, ``Instances`` fields, dataset dicts.
* :mod:`ssb.adapters.evaluation` - ``COCOEvaluator`` and ``DatasetEvaluators`` (detectron2's
  ``reset / process / evaluate``; pycocotools mAP).
* :mod:`ssb.adapters.video_codecs` - H.264 / H.265 / AV1 baselines through ffmpeg.
* :mod:`ssb.adapters.onnx` - ONNX Runtime for the decoder-side networks (CPU, CUDA).
* :mod:`ssb.adapters.mmaction` - mmaction2 skeletons, an SSB-features backbone, results.
* :mod:`ssb.adapters.ray` - batch analysis of many streams on Ray Data (or a local loop) into Parquet.
* :mod:`ssb.adapters.pixel_codecs` - JPEG / WebP / AVIF / PNG baselines through Pillow.
* :mod:`ssb.adapters.torchvision` - torchvision training targets and ``BackboneAdapter``.

Importing this package or its submodules imports neither torch, Pillow nor pycocotools;
each is loaded when a function needs it.
"""
