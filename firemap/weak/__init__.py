"""Weakly supervised masks: image-level labels -> CAMs -> AffinityNet random walk -> pseudo masks.

Modules: :mod:`~firemap.weak.labels` (label files), :mod:`~firemap.weak.samples` (labelled windows as inputs),
:mod:`~firemap.weak.cam` (classifier and CAMs), :mod:`~firemap.weak.affinity` (AffinityNet),
:mod:`~firemap.weak.walk` (random walk, tiled), :mod:`~firemap.weak.pseudolabel` (orchestration),
:mod:`~firemap.weak.config` (options). Method: Ahn & Kwak, CVPR 2018.
"""
