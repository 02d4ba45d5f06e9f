"""The trainer's parts (:mod:`mtl.train` puts them together): the optimisers, LR schedulers and gradient
modes a trial may name (small registries that own their names and factories, so
:class:`mtl.config.TrainConfig`'s choices derive from them), the devices, the RNG state and the evaluation
loop. Importing the registries loads no torch: configuration code lists their names."""
