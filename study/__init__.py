"""Distributed hyperparameter studies of MTL methods with Ray Tune (the only package that imports Ray).

Modules: :mod:`study.schema` (the study YAML), :mod:`study.space` (search spaces), :mod:`study.trial`
(the trainable), :mod:`study.tuner` (Tuner set-up), :mod:`study.cluster` (Ray start/join),
:mod:`study.runner` (run/resume/status), :mod:`study.cli`. Results are written and read through the
Ray-free :mod:`results_store` package.
Importing ``study`` itself loads nothing heavy.
"""
