"""A study's results store: Parquet rows of every trial and epoch, below both ``study`` and ``analysis``.

``study`` writes through it and ``analysis`` reads through it; it imports neither, and loads no torch, Ray
or optuna (only pyarrow, pandas and the torch-free :mod:`mtl.best_epoch` / :mod:`mtl.errors`), so reading
a study is fast and analysis code writes test fixtures exactly as a real study does. Modules, one job each:

* :mod:`results_store.columns` — the schema: version, table folders, column names and types, statuses,
  ``config_id``;
* :mod:`results_store.location` — storage locations, the hive-partitioned folders and file names;
* :mod:`results_store.identity` — who a row belongs to (:class:`~results_store.identity.TrialInfo`) as
  columns;
* :mod:`results_store.writer` — :class:`~results_store.writer.ResultsWriter`, atomic one-row files;
* :mod:`results_store.compaction` — one file per ended trial, consistent at every step;
* :mod:`results_store.reader` — one consistent scan per table (:func:`~results_store.reader.read_epochs`,
  :func:`~results_store.reader.read_trials`);
* :mod:`results_store.selection` — the one answer to "best": a trial's best epoch, the best configuration over
  seeds, the selection protocols (``best_val``, ``last_k``);
* :mod:`results_store.labels` — the one labeler of hyperparameter configurations.
"""
