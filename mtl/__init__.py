"""mtl: a pure-PyTorch multi-task learning library (balancers, aggregators, gradient engine, models,
datasets, metrics, trainer). It never imports ray, optuna or pandas."""

__version__ = "0.1.0"
