"""Training, fine-tuning and evaluation of firemap models.

Modules: :mod:`~firemap.train.config` (typed configs), :mod:`~firemap.train.data` (tile sources, mixtures,
statistics, augmentation), :mod:`~firemap.train.losses`, :mod:`~firemap.train.metrics`,
:mod:`~firemap.train.loop` (the fit loop) and :mod:`~firemap.train.evaluate` (scene-level evaluation with
baselines). Transfer learning (band-aware first-conv adaptation) lives in :mod:`firemap.transfer`.
"""
