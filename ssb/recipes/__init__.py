"""Recipes: the seeded training and evaluation procedures behind ``ssb train`` and ``ssb eval``.

This layer sits above ``ssb.tasks`` and ``ssb.adapters`` (it uses task heads for output
distillation and COCO conventions for evaluation) and below ``ssb.cli``.
"""
