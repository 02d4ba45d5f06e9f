"""Malformed studies, datasets and method arguments, each answered by a clear error before training starts.

:data:`CASES` is the table: an id, what is wrong, where it is caught (``study check`` = schema validation,
which ``study run`` also does before starting Ray; ``Ray start`` = the cluster check ``study run`` does right
after connecting, before any trial; ``dataset`` / ``method`` construction = what a trial does before its
first step; ``mtl train`` = that command, before it builds the dataset), the expected error type and a
fragment of its message. ``docs/bad_inputs.md`` is rendered from
it (with the actual messages)::

    python -m tests.test_bad_inputs > docs/bad_inputs.md
"""

from __future__ import annotations

import copy
import csv
import sys
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from mtl.errors import ConfigError, DatasetError, MTLError

DOC = Path(__file__).resolve().parents[1] / "docs" / "bad_inputs.md"
TASKS = ["t0", "t1", "t2"]

# a valid study; each study case changes one thing
BASE_STUDY: dict[str, Any] = {
    "name": "bad",
    "datasets": [{"name": "synthetic", "kwargs": {"n_train": 64}}],
    "methods": ["ew", {"name": "db_mtl", "space": {"beta": {"choice": [0.1, 0.9]}}}],
    "seeds": [0],
    "space": {"lr": {"loguniform": [1.0e-4, 1.0e-2]}},
    "train": {"epochs": 3, "batch_size": 32, "device": "cpu"},
    "search": {"algorithm": "optuna", "seed": 0, "num_samples": 2},
    "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2},
    "resources": {"cpus_per_trial": 1},
}


def _study_error() -> type[Exception]:
    from study.schema import StudyError

    return StudyError


def _cluster_error() -> type[Exception]:
    from study.cluster import ClusterError

    return ClusterError


def _state_error() -> type[Exception]:
    from study.runner import StudyStateError

    return StudyStateError


def ls_on_a_file(tmp: Path) -> Any:
    from study.runner import list_studies

    path = tmp / "a-file"
    path.write_text("not a folder")
    return list_studies(str(path))


def _cache_error() -> type[Exception]:
    from mtl.data.qm9 import CacheError

    return CacheError


@dataclass(frozen=True)
class Case:
    """``run(tmp)`` triggers the check; ``expect`` is an exception class (or a factory of one, for classes
    that live in modules imported lazily) or a warning class."""

    id: str
    input: str
    stage: str
    run: Callable[[Path], Any]
    expect: type[BaseException] | Callable[[], type[BaseException]]
    match: str

    @property
    def expected(self) -> type[BaseException]:
        e = self.expect
        return e if isinstance(e, type) else e()


# -- study files ---------------------------------------------------------------------------------------------
def study_file(edit: Callable[[dict[str, Any]], Any] | str) -> Callable[[Path], Any]:
    """A case that writes the base study changed by ``edit`` (or raw YAML text) and loads it like
    ``study check`` does."""

    def run(tmp: Path) -> Any:
        from study.schema import load_study

        if isinstance(edit, str):
            text = edit
        else:
            doc = copy.deepcopy(BASE_STUDY)
            edit(doc)
            text = yaml.safe_dump(doc, sort_keys=False)
        path = tmp / "bad.yaml"
        path.write_text(text)
        return load_study(path)

    return run


def study_bytes(data: bytes) -> Callable[[Path], Any]:
    """A case whose study file holds ``data`` (e.g. not text at all), loaded like ``study check`` does."""

    def run(tmp: Path) -> Any:
        from study.schema import load_study

        path = tmp / "bad.yaml"
        path.write_bytes(data)
        return load_study(path)

    return run


def storage_on_a_file(tmp: Path) -> Any:
    """``storage:`` naming an existing regular file (the results would have to go inside it)."""
    (tmp / "results.txt").write_text("not a folder\n")
    return study_file(_set("storage", str(tmp / "results.txt")))(tmp)


def train_out_under_a_file(tmp: Path) -> Any:
    """``mtl train --out`` below an existing regular file: refused before the dataset is built."""
    from mtl.cli import _open_out

    (tmp / "file").write_text("")
    return _open_out(str(tmp / "file" / "records.jsonl"))


def _alias_bomb(levels: int = 9) -> str:
    """A 'billion laughs': each anchor a list of nine aliases of the previous one (9**levels values)."""
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return edit


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda doc: doc.pop(key)


def _searched(name: str, param: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    """Add ``name`` (which may contain dots) to ``tune.space``."""
    return lambda doc: doc["tune"]["space"].update({name: param})


def _tune(*edits: Callable[[dict[str, Any]], Any], **tune: Any) -> Callable[[dict[str, Any]], None]:
    """The base study as a fair comparison (``tune:`` instead of ``space:`` and ``search.num_samples``),
    then changed by ``edits``."""

    def edit(doc: dict[str, Any]) -> None:
        doc["tune"] = {"space": doc.pop("space"), "num_samples": 2, "defaults": True, **tune}
        doc["search"].pop("num_samples")
        doc["train"]["scheduler"] = "plateau"
        for e in edits:
            e(doc)

    return edit


def cluster_check(
    edit: Callable[[dict[str, Any]], Any], nodes: list[dict[str, float]]
) -> Callable[[Path], Any]:
    """A study that is valid as a file but cannot run on a cluster of ``nodes`` (what ``study run`` checks
    right after starting or joining Ray, before any trial is scheduled)."""

    def run(tmp: Path) -> Any:
        from study.cluster import check_resources

        study = study_file(edit)(tmp)
        check_resources(nodes, study.resources, "the Ray cluster")

    return run


# -- datasets ------------------------------------------------------------------------------------------------
RES = (16, 24)


def nyuv2(damage: Callable[[Path], Any] | None = None, **kwargs: Any) -> Callable[[Path], Any]:
    """A tiny NYUv2 folder in the published layout, damaged by ``damage(root)``, then built."""

    def run(tmp: Path) -> Any:
        from mtl.data import build_dataset

        root = tmp / "nyuv2"
        rng = np.random.default_rng(0)
        h, w = RES
        for folder, n in (("train", 4), ("val", 2)):
            for i in range(n):
                arrays = {
                    "image": rng.random((h, w, 3), dtype=np.float32),
                    "label": rng.integers(-1, 13, (h, w)).astype(np.float32),
                    "depth": rng.random((h, w, 1), dtype=np.float32),
                    "normal": rng.normal(size=(h, w, 3)).astype(np.float32),
                }
                for key, arr in arrays.items():
                    (root / folder / key).mkdir(parents=True, exist_ok=True)
                    np.save(root / folder / key / f"{i}.npy", arr)
        if damage is not None:
            damage(root)
        return build_dataset("nyuv2", **{"root": str(root), "resolution": RES, **kwargs})

    return run


def _truncate(rel: str, keep: int | None = None, drop: int | None = None) -> Callable[[Path], None]:
    def damage(root: Path) -> None:
        path = root / rel
        data = path.read_bytes()
        path.write_bytes(data[:keep] if keep is not None else data[: len(data) - (drop or 0)])

    return damage


def _replace(rel: str, array: Any) -> Callable[[Path], None]:
    return lambda root: np.save(root / rel, array)


def _remove(rel: str) -> Callable[[Path], None]:
    def damage(root: Path) -> None:
        path = root / rel
        if path.is_dir():
            for f in path.iterdir():
                f.unlink()
            path.rmdir()
        else:
            path.unlink()

    return damage


def _qm9_source(directory: Path, rows: int, drop_column: str | None = None) -> Path:
    """The first ``rows`` molecules of qm9pack in its own CSV format (the other part files: header only)."""
    from mtl.data import qm9

    directory.mkdir(parents=True, exist_ok=True)
    csv.field_size_limit(1 << 30)
    with open(qm9.source_dir() / "qm9_part1.csv", newline="") as f:
        reader = csv.DictReader(f)
        header = [c for c in (reader.fieldnames or []) if c != drop_column]
        records = [{k: r[k] for k in header} for _, r in zip(range(rows), reader)]
    for name in qm9.SOURCE_FILES:
        with open(directory / name, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=header, quoting=csv.QUOTE_NONNUMERIC)
            writer.writeheader()
            if name == "qm9_part1.csv":
                writer.writerows(records)
    return directory


def qm9_cache(corrupt: Callable[[Path], Any], through_dataset: bool = False) -> Callable[[Path], Any]:
    """Build a QM9 cache for a 26-molecule subset, corrupt it, then load it (``load_cache``, which raises
    the reason) or build the dataset again (which warns with the reason and rebuilds the cache)."""

    def run(tmp: Path) -> Any:
        from mtl.data import build_dataset, qm9

        src = _qm9_source(tmp / "src", 40)
        kw = {"source": str(src), "cache_dir": str(tmp / "cache"), "progress": False}
        path = build_dataset("qm9", subset=26, **kw).cache_path
        corrupt(path)
        if through_dataset:
            rebuilt = build_dataset("qm9", subset=26, **kw)
            assert qm9.load_cache(path, qm9.source_fingerprint(src))  # the rebuilt cache is valid
            return rebuilt
        return qm9.load_cache(path, qm9.source_fingerprint(src))

    return run


def _garbage(path: Path) -> None:
    path.write_bytes(b"not a torch file")


def _truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _tampered(path: Path) -> None:
    import torch

    blob = torch.load(path, weights_only=True)
    blob["tensors"]["y"][0, 0] += 1.0
    torch.save(blob, path)


def method(name: str, **kwargs: Any) -> Callable[[Path], Any]:
    def run(_tmp: Path) -> Any:
        from mtl.methods import build_method

        return build_method(name, TASKS, **kwargs)

    return run


def train_config(**values: Any) -> Callable[[Path], Any]:
    def run(_tmp: Path) -> Any:
        from mtl.config import TrainConfig

        return TrainConfig.from_dict({"dataset": "synthetic", "method": "ew", **values})

    return run


S, R, D, M, T = "study check", "Ray start", "dataset construction", "method construction", "trial config"
CASES: list[Case] = [
    # study files: syntax and shape
    Case("yaml-syntax", "unclosed bracket in YAML", S, study_file("name: x\nmethods: [ew\n"), _study_error,
         "not valid YAML: line"),
    Case("not-a-mapping", "the document is a list", S, study_file("- ew\n- db_mtl\n"), _study_error,
         "must be a mapping of fields"),
    Case("missing-field", "no `train:` section", S, study_file(_drop("train")), _study_error,
         "train: required field is missing"),
    Case("unknown-field", "`trian:` instead of `train:`", S,
         study_file(lambda d: d.update(trian=d.pop("train"))), _study_error, "did you mean 'train'"),
    Case("bad-type-epochs", "`train.epochs: three`", S, study_file(_set("train.epochs", "three")),
         _study_error, "train.epochs: Input should be a valid integer"),
    Case("bad-type-seeds", "`seeds: \"0,1\"` (a string)", S, study_file(_set("seeds", "0,1")), _study_error,
         "seeds: Input should be a valid list"),
    Case("bad-name", "`name: my study` (space)", S, study_file(_set("name", "my study")), _study_error,
         "name: String should match pattern"),
    Case("duplicate-seeds", "`seeds: [0, 0]`", S, study_file(_set("seeds", [0, 0])), _study_error,
         "seeds: values must be distinct"),
    Case("zero-samples", "`search.num_samples: 0`", S, study_file(_set("search.num_samples", 0)),
         _study_error, "search.num_samples: Input should be greater than or equal to 1"),
    Case("unknown-search", "`search.algorithm: tpe`", S, study_file(_set("search.algorithm", "tpe")),
         _study_error, "search.algorithm: Input should be 'optuna', 'random' or 'grid'"),
    Case("max-t-beyond-epochs", "`scheduler.max_t: 10` with 3 epochs", S,
         study_file(_set("scheduler.max_t", 10)), _study_error, "scheduler.max_t: 10 exceeds train.epochs"),
    Case("bad-ray-address", "`ray.address: http://head`", S,
         study_file(_set("ray", {"address": "http://head"})), _study_error,
         "address must be null (local Ray)"),
    Case("binary-file", "a binary file (a gzip header) as the study YAML", S,
         study_bytes(b"\x1f\x8b\x08\x00\xff\xfe" + bytes(range(200, 256))), _study_error,
         "not a text (UTF-8) file"),
    Case("duplicate-key", "a second `train:` block in the same file", S,
         study_file(yaml.safe_dump(BASE_STUDY, sort_keys=False) + "train: {epochs: 9}\n"), _study_error,
         "duplicate key 'train' (first given on line"),
    Case("bool-seed", "`seeds: [true]`", S, study_file(_set("seeds", [True])), _study_error,
         "seeds[0]: Input should be a valid integer, not a boolean"),
    Case("negative-search-seed", "`search.seed: -1`", S, study_file(_set("search.seed", -1)), _study_error,
         "search.seed: Input should be greater than or equal to 0"),
    Case("empty-storage", "`storage: \"\"`", S, study_file(_set("storage", "")), _study_error,
         "storage: empty"),
    Case("storage-is-a-file", "`storage:` names an existing regular file", S, storage_on_a_file, _study_error,
         "is a file, not a folder"),
    # methods in study files
    Case("unknown-method", "`methods: [db_mtll]`", S, study_file(_set("methods", ["db_mtll"])),
         _study_error, "methods[0].name: unknown method 'db_mtll'"),
    Case("unknown-aggregator", "`igbv2+pcgradd`", S, study_file(_set("methods", ["igbv2+pcgradd"])),
         _study_error, "unknown aggregator 'pcgradd'"),
    Case("no-methods", "`methods: []`", S, study_file(_set("methods", [])), _study_error,
         "methods: List should have at least 1 item"),
    Case("duplicate-method-spelling", "`methods: [db_mtl, db-mtl]` (one method, two spellings)", S,
         study_file(_set("methods", ["db_mtl", "db-mtl"])), _study_error,
         "methods[1].name: 'db-mtl' is the same method as methods[0] 'db_mtl'"),
    Case("unknown-method-kwarg", "`db_mtl` with `kwargs: {betta: 0.5}`", S,
         study_file(_set("methods.1", {"name": "db_mtl", "kwargs": {"betta": 0.5}})), _study_error,
         "unknown keyword argument 'betta' for method 'db_mtl'"),
    Case("bad-method-kwarg-value", "`alpha_strategy: maximum`", S,
         study_file(_set("methods.1", {"name": "db_mtl", "kwargs": {"alpha_strategy": "maximum"}})),
         _study_error, "unknown alpha_strategy 'maximum'; valid: max, min"),
    Case("negative-buffer-size", "IGBv2 `kwargs: {buffer_size: -100}`", S,
         study_file(_set("methods.1", {"name": "igbv2", "kwargs": {"buffer_size": -100}})), _study_error,
         "buffer_size must be an integer >= 1, got -100"),
    Case("negative-buffer-size-searched", "IGBv2 `buffer_size: {int: [-10, 1000]}`", S,
         study_file(_set("methods.1", {"name": "igbv2", "space": {"buffer_size": {"int": [-10, 1000]}}})),
         _study_error, "methods[1].space.buffer_size: igbv2 buffer_size must be an integer >= 1, got -10"),
    Case("buffer-size-not-a-number", "IGBv2 `buffer_size: lots`", S,
         study_file(_set("methods.1", {"name": "igbv2", "kwargs": {"buffer_size": "lots"}})), _study_error,
         "igbv2': buffer_size must be a number, got the string 'lots'"),
    Case("bad-type-method-kwarg", "`beta: high`", S,
         study_file(_set("methods.1", {"name": "db_mtl", "kwargs": {"beta": "high"}})), _study_error,
         "beta must be a number, got the string 'high'"),
    # search spaces
    Case("empty-choice", "`lr: {choice: []}`", S, study_file(_set("space", {"lr": {"choice": []}})),
         _study_error, "space.lr: choice needs at least one value"),
    Case("empty-distribution", "`lr: {}`", S, study_file(_set("space", {"lr": {}})), _study_error,
         "space.lr: give exactly one of choice, grid, uniform, loguniform, int"),
    Case("unknown-distribution", "`lr: {normal: [0, 1]}`", S,
         study_file(_set("space", {"lr": {"normal": [0, 1]}})), _study_error,
         "space.lr.normal: unknown field"),
    Case("loguniform-from-zero", "`lr: {loguniform: [0, 0.1]}`", S,
         study_file(_set("space", {"lr": {"loguniform": [0, 0.1]}})), _study_error,
         "loguniform needs low > 0"),
    Case("reversed-bounds", "`beta: {uniform: [0.9, 0.1]}`", S,
         study_file(_set("methods.1.space", {"beta": {"uniform": [0.9, 0.1]}})), _study_error,
         "uniform needs finite low < high"),
    Case("searched-value-out-of-range", "`beta: {choice: [0.5, 1.5]}`", S,
         study_file(_set("methods.1.space", {"beta": {"choice": [0.5, 1.5]}})), _study_error,
         "methods[1].space.beta: max_norm beta must be in [0, 1), got 1.5"),
    Case("reserved-hyperparameter", "searching `seed`", S,
         study_file(_set("space", {"seed": {"choice": [0, 1]}})), _study_error, "'seed' cannot be searched"),
    Case("grid-with-continuous", "`search.algorithm: grid` with a loguniform", S,
         study_file(_set("search", {"algorithm": "grid"})), _study_error,
         "search.algorithm grid needs choice"),
    Case("searched-name-typo", "`space: {lrr: ...}` (meant `lr`)", S,
         study_file(_set("space", {"lrr": {"loguniform": [1.0e-4, 1.0e-2]}})), _study_error,
         "space.lrr: unknown hyperparameter 'lrr' for method 'ew' (did you mean 'lr'?)"),
    Case("searched-model-kwarg-out-of-range", "`space: {model.hidden: {choice: [0, 8]}}`", S,
         study_file(_set("space", {"model.hidden": {"choice": [0, 8]}})), _study_error,
         "space.model.hidden: synthetic model argument hidden must be an integer in [1, 65,536], got 0"),
    Case("searched-dataset-kwarg-out-of-range", "`space: {dataset.n_train: {int: [-8, 64]}}`", S,
         study_file(_set("space", {"dataset.n_train": {"int": [-8, 64]}})), _study_error,
         "space.dataset.n_train: synthetic n_train must be in [1, 10,000,000], got -8"),
    # training settings, datasets named in the study, resources
    Case("negative-lr", "`train.lr: -0.001`", S, study_file(_set("train.lr", -0.001)), _study_error,
         "train.lr: Input should be greater than 0"),
    Case("unknown-optimizer", "`train.optimizer: adagrad`", S, study_file(_set("train.optimizer", "adagrad")),
         _study_error, "optimizer 'adagrad' unknown; valid: adam, adamw, sgd"),
    Case("unknown-grad-mode", "`train.grad_mode: fast`", S, study_file(_set("train.grad_mode", "fast")),
         _study_error, "grad_mode 'fast' unknown; valid: exact, exact_vmap, rep"),
    Case("unknown-dataset", "`datasets: [qm10]`", S, study_file(_set("datasets", ["qm10"])), _study_error,
         "unknown dataset 'qm10'"),
    Case("unknown-dataset-kwarg", "synthetic `kwargs: {n_trian: 64}`", S,
         study_file(_set("datasets", [{"name": "synthetic", "kwargs": {"n_trian": 64}}])), _study_error,
         "unknown keyword argument(s) ['n_trian'] for dataset 'synthetic'"),
    Case("dataset-kwarg-out-of-range", "synthetic `kwargs: {n_train: -5}`", S,
         study_file(_set("datasets", [{"name": "synthetic", "kwargs": {"n_train": -5}}])), _study_error,
         "datasets[0]: synthetic n_train must be in [1, 10,000,000], got -5"),
    Case("dataset-no-tasks", "synthetic `kwargs: {num_tasks: 0}`", S,
         study_file(_set("datasets", [{"name": "synthetic", "kwargs": {"num_tasks": 0}}])), _study_error,
         "datasets[0]: synthetic num_tasks must be in [1, 1000], got 0"),
    Case("dataset-kwarg-wrong-type", "synthetic `kwargs: {n_train: 12.5}`", S,
         study_file(_set("datasets", [{"name": "synthetic", "kwargs": {"n_train": 12.5}}])), _study_error,
         "datasets[0]: synthetic n_train must be an integer, got 12.5"),
    Case("qm9-subset-in-study", "qm9 `kwargs: {subset: 5}` in a study file", S,
         study_file(_set("datasets", [{"name": "qm9", "kwargs": {"subset": 5}}])), _study_error,
         "datasets[0]: qm9 subset must be an integer >= 13, got 5"),
    Case("unknown-logger", "`loggers: [tensorbord]`", S,
         study_file(_set("loggers", ["tensorbord"])), _study_error,
         "loggers[0].name: Input should be 'tensorboard' or 'mlflow'"),
    Case("logger-twice", "`loggers: [tensorboard, tensorboard]`", S,
         study_file(_set("loggers", ["tensorboard", "tensorboard"])), _study_error,
         "loggers[1]: 'tensorboard' is listed twice (loggers[0]); list it once"),
    Case("mlflow-file-store-on-remote-storage", "`loggers: [mlflow]` with `storage: s3://bucket/x`", S,
         study_file(lambda d: d.update(loggers=["mlflow"], storage="s3://bucket/x")), _study_error,
         "loggers[0].tracking_uri: the study's storage 's3://bucket/x' is not local"),
    Case("stl-without-task", "`methods: [stl]` (no task)", S,
         study_file(_set("methods", ["stl"])), _study_error,
         "methods[0]: stl trains one task: give kwargs {task: NAME} or space {task: {grid: [...]}}"),
    Case("stl-task-not-in-study-dataset", "stl `space: {task: {grid: [t0, t9]}}` on synthetic (3 tasks)", S,
         study_file(_set("methods", [{"name": "stl", "space": {"task": {"grid": ["t0", "t9"]}}}])),
         _study_error, "methods[0].space.task: ['t9'] not a task of synthetic; tasks: t0, t1, t2"),
    Case("unknown-model-kwarg", "`train.model_kwargs: {hiddn: 8}` on synthetic", S,
         study_file(_set("train.model_kwargs", {"hiddn": 8})), _study_error,
         "unknown model argument(s) ['hiddn'] for synthetic (did you mean 'hidden'?); valid: hidden"),
    Case("model-kwarg-out-of-range", "`train.model_kwargs: {hidden: 0}` on synthetic", S,
         study_file(_set("train.model_kwargs", {"hidden": 0})), _study_error,
         "train.model_kwargs: synthetic model argument hidden must be an integer in [1, 65,536], got 0"),
    Case("architecture-not-offered", "`train.architecture: mtan` on synthetic", S,
         study_file(_set("train.architecture", "mtan")), _study_error,
         "train.architecture: synthetic supports architectures: hps, mmoe, cgc, ple, dselect_k; got 'mtan'"),
    Case("cuda-without-gpus-per-trial", "`train.device: cuda`, `gpus_per_trial: 0`", S,
         study_file(_set("train.device", "cuda")), _study_error, "needs resources.gpus_per_trial > 0"),
    Case("gpus-per-trial-on-cpu", "`gpus_per_trial: 0.5` with `train.device: cpu`", S,
         study_file(_set("resources", {"cpus_per_trial": 1, "gpus_per_trial": 0.5})), _study_error,
         "the GPU would sit idle: write train.device: auto"),
    Case("gpu-request-without-gpus", "`gpus_per_trial: 1` on a cluster with no GPU", R,
         cluster_check(lambda d: (d["train"].update(device="cuda"), d["resources"].update(gpus_per_trial=1)),
                       [{"CPU": 2.0}]),
         _cluster_error, "has no GPUs"),
    Case("more-cpus-than-any-node", "`cpus_per_trial: 8` on 2-CPU nodes", R,
         cluster_check(_set("resources.cpus_per_trial", 8), [{"CPU": 2.0}, {"CPU": 2.0}]), _cluster_error,
         "no node of the Ray cluster can hold one trial"),
    # fair comparisons (tune:, issue 22)
    Case("tune-beside-space", "`tune:` and a study-wide `space:`", S,
         study_file(_tune(_set("space", {"weight_decay": {"loguniform": [1.0e-6, 1.0e-3]}}))), _study_error,
         "space: ['weight_decay'] given beside tune.space"),
    Case("tune-beside-num-samples", "`tune.num_samples` and `search.num_samples`", S,
         study_file(_tune(_set("search.num_samples", 4))), _study_error,
         "search.num_samples: 4 given beside tune.num_samples (2)"),
    Case("tune-with-grid-search", "`tune:` with `search.algorithm: grid`", S,
         study_file(_tune(_set("search.algorithm", "grid"))), _study_error,
         "search.algorithm: grid runs every combination, a different number per method"),
    Case("tune-key-in-both-spaces", "`lr` in `tune.space` and in db_mtl's `space`", S,
         study_file(_tune(_set("methods.1.space", {"lr": {"loguniform": [1.0e-3, 1.0e-2]}}))), _study_error,
         "methods[1].space.lr: also in tune.space; a name is searched in one place"),
    Case("tune-grid-values", "`tune.space: {lr: {grid: [...]}}`", S,
         study_file(_tune(_set("tune.space", {"lr": {"grid": [1.0e-3, 1.0e-2]}}))), _study_error,
         "tune.space.lr: 'grid' multiplies the configurations of a group"),
    Case("tune-space-too-small", "`tune.num_samples: 5`, ew's space has 2 values + the default", S,
         study_file(_tune(_set("tune.space", {"weight_decay": {"choice": [0.0, 1.0e-4]}}), num_samples=5)),
         _study_error, "tune.num_samples: 5 configurations per group, but methods[0] 'ew' has only 3"),
    Case("tune-zero-samples", "`tune.num_samples: 0`", S,
         study_file(_tune(num_samples=0)), _study_error,
         "tune.num_samples: Input should be greater than or equal to 1"),
    Case("scheduler-arg-of-other-scheduler", "`scheduler_kwargs.step_size` searched with plateau", S,
         study_file(_tune(_searched("scheduler_kwargs.step_size", {"int": [10, 50]}))), _study_error,
         "'step_size' is not an argument of the LR scheduler 'plateau' (torch's ReduceLROnPlateau"),
    Case("scheduler-arg-misspelt", "`scheduler_kwargs.patiense` (plateau)", S,
         study_file(_tune(_searched("scheduler_kwargs.patiense", {"int": [2, 8]}))), _study_error,
         "(did you mean 'patience'?)"),
    Case("scheduler-arg-without-scheduler", "`scheduler_kwargs.patience` on synthetic (no LR scheduler)", S,
         study_file(_tune(lambda d: d["train"].pop("scheduler"),
                          _searched("scheduler_kwargs.patience", {"int": [2, 8]}))), _study_error,
         "'patience' is not an argument of the LR scheduler 'none' (no LR scheduler; synthetic's paper"),
    Case("scheduler-arg-bad-value", "`scheduler_kwargs.factor: {uniform: [0.5, 1.5]}` (plateau)", S,
         study_file(_tune(_searched("scheduler_kwargs.factor", {"uniform": [0.5, 1.5]}))), _study_error,
         "factor=1.5 rejected by the LR scheduler 'plateau': Factor should be < 1.0"),
    # numbers bounded by what they can mean, and limits on the file itself (issue 24, items 4, 5, 7)
    Case("huge-seed", "`seeds: [2**70]`", S, study_file(_set("seeds", [2**70])), _study_error,
         "seeds[0]: Input should be less than or equal to 4294967295"),
    Case("negative-seed", "`seeds: [-1]`", S, study_file(_set("seeds", [-1])), _study_error,
         "seeds[0]: Input should be greater than or equal to 0"),
    Case("too-many-seeds", "1,001 seeds", S, study_file(_set("seeds", list(range(1001)))), _study_error,
         "seeds: List should have at most 1000 items"),
    Case("huge-epochs", "`train.epochs: 2**70`", S, study_file(_set("train.epochs", 2**70)), _study_error,
         "train.epochs: Input should be less than or equal to 100000"),
    Case("huge-batch-size", "`train.batch_size: 1000000000`", S,
         study_file(_set("train.batch_size", 10**9)), _study_error,
         "train.batch_size: Input should be less than or equal to 1000000"),
    Case("huge-searched-batch-size", "`space: {batch_size: {int: [1, 2**70]}}`", S,
         study_file(_set("space", {"batch_size": {"int": [1, 2**70]}})), _study_error,
         "space.batch_size: batch_size must be <= 1000000"),
    Case("huge-model-width", "`train.model_kwargs: {hidden: 1e11}` on synthetic", S,
         study_file(_set("train.model_kwargs", {"hidden": 10**11})), _study_error,
         "synthetic model argument hidden must be an integer in [1, 65,536]"),
    Case("huge-dataset", "synthetic `kwargs: {n_train: 1e13}`", S,
         study_file(_set("datasets", [{"name": "synthetic", "kwargs": {"n_train": 10**13}}])), _study_error,
         "synthetic n_train must be in [1, 10,000,000]"),
    Case("infinite-lr", "`train.lr: .inf`", S, study_file("name: bad\ndatasets: [synthetic]\nmethods: [ew]\n"
         "train: {epochs: 2, lr: .inf}\n"), _study_error, "train.lr: Input should be a finite number"),
    Case("cuda-device-index", "`train.device: 'cuda:abc'`", S, study_file(_set("train.device", "cuda:abc")),
         _study_error, "device 'cuda:abc' unknown; valid: auto, cpu, cuda, cuda:N"),
    Case("scheduler-kwargs-under-none", "`scheduler: none` with `scheduler_kwargs: {patience: 3}`", S,
         study_file(lambda d: d["train"].update(scheduler="none", scheduler_kwargs={"patience": 3})),
         _study_error, "scheduler 'none' takes no scheduler_kwargs, got ['patience']"),
    Case("choice-of-wrong-type", "`lr: {choice: [0.001, fast]}`", S,
         study_file(_set("space", {"lr": {"choice": [0.001, "fast"]}})), _study_error,
         "space.lr: lr must be a number, got 'fast'"),
    Case("empty-file", "an empty study file", S, study_file(""), _study_error, "the file is empty"),
    Case("alias-bomb", "a 'billion laughs' of aliases (under 1 KB)", S, study_file(_alias_bomb()),
         _study_error, "the document expands to more than 100,000 values"),
    Case("deep-nesting", "lists nested 500 deep", S, study_file("a: " + "[" * 500 + "]" * 500 + "\n"),
         _study_error, "nested more than 32 levels deep"),
    Case("huge-file", "a 2 MB study file", S, study_file("# " + "x" * (2 << 20) + "\n"), _study_error,
         "a study file may have at most 1,048,576"),
    Case("long-list", "a list of 20,000 seeds (under 1 MB)", S,
         study_file("seeds: [" + ", ".join(["1"] * 20_000) + "]\n"), _study_error,
         "a list with more than 10,000 items"),
    Case("static-weight-of-no-task", "`static` with `weight.t9=2` (no task t9)", M,
         method("static", **{"weight.t9": 2.0}), ConfigError, "not a task of this dataset"),
    Case("trial-seed-too-large", "`mtl train --seed 2**70` (TrainConfig seed)", T, train_config(seed=2**70),
         ConfigError, "seed must be <= 9223372036854775807"),
    # storage and Ray settings, before Ray starts (issue 24, item 6)
    Case("storage-shell-variable", "`storage: $HOME/results`", S,
         study_file(_set("storage", "$HOME/results")), _study_error,
         "holds a shell variable or '~', which is not expanded here"),
    Case("storage-unknown-scheme", "`storage: nosuchscheme://bucket/x`", S,
         study_file(_set("storage", "nosuchscheme://bucket/x")), _study_error,
         "storage: unknown filesystem scheme 'nosuchscheme://'"),
    Case("object-store-beyond-memory", "`ray.object_store_memory: 1e15`", S,
         study_file(_set("ray", {"object_store_memory": 10**15})), _study_error,
         "exceeds this machine's memory"),
    Case("ray-address-not-answering", "`ray.address: 127.0.0.1:1` (nothing listening)", R,
         lambda _tmp: __import__("study.cluster", fromlist=["x"]).check_reachable("127.0.0.1:1", timeout=2),
         _cluster_error, "ray.address '127.0.0.1:1': nothing answers there"),
    Case("ls-storage-is-a-file", "`study ls --storage <a file>`", "study ls", ls_on_a_file, _state_error,
         "is a file, not a folder of studies"),
    # method arguments given directly (mtl train -m ..., or a trial)
    Case("stl-unknown-task", "`stl` with `task=t9`", M, method("stl", task="t9"), ConfigError,
         "stl task 't9' is not a task of this dataset"),
    Case("missing-solver", "`nash_mtl` with `solver=GUROBI`", M, method("nash_mtl", solver="GUROBI"),
         ConfigError, "solver 'GUROBI' is not installed"),
    Case("negative-cagrad-c", "`cagrad` with `c=-1`", M, method("cagrad", c=-1), ConfigError,
         "cagrad c must be >= 0"),
    Case("trial-config-unknown-key", "TrainConfig with `epoch=3`", T, train_config(epoch=3), ConfigError,
         "unknown trial config key(s) ['epoch']"),
    Case("train-out-under-a-file", "`mtl train --out file/records.jsonl` below a regular file", "mtl train",
         train_out_under_a_file, MTLError, "is a file, not a folder"),
    # dataset folders (NYUv2, published .npy layout)
    Case("nyuv2-missing-root", "`root` that does not exist", D,
         lambda tmp: nyuv2(root=str(tmp / "nowhere"))(tmp), DatasetError, "does not exist"),
    Case("nyuv2-missing-folder", "no `train/depth/` folder", D, nyuv2(_remove("train/depth")), DatasetError,
         "expected folder"),
    Case("nyuv2-missing-file", "`train/normal/2.npy` missing", D, nyuv2(_remove("train/normal/2.npy")),
         DatasetError, "train/normal/2.npy"),
    Case("nyuv2-truncated-npy", "`train/depth/1.npy` cut short after its header", D,
         nyuv2(_truncate("train/depth/1.npy", drop=100)), DatasetError, "1.npy is truncated"),
    Case("nyuv2-truncated-header", "`val/image/0.npy` cut inside its header", D,
         nyuv2(_truncate("val/image/0.npy", keep=40)), DatasetError, "is not a valid .npy file"),
    Case("nyuv2-not-npy", "`train/label/0.npy` is text", D,
         nyuv2(lambda root: (root / "train/label/0.npy").write_text("hello")), DatasetError,
         "is not a valid .npy file"),
    Case("nyuv2-wrong-shape", "`train/image/3.npy` of shape 16×24×2", D,
         nyuv2(_replace("train/image/3.npy", np.zeros((16, 24, 2), np.float32))), DatasetError,
         "shape (16, 24, 2), expected (16, 24, 3)"),
    Case("nyuv2-wrong-dtype", "`train/depth/0.npy` holds strings", D,
         nyuv2(_replace("train/depth/0.npy", np.full((16, 24, 1), "x"))), DatasetError, "expected a numeric"),
    Case("nyuv2-bad-val-fraction", "`val_fraction=1.5`", D, nyuv2(val_fraction=1.5), ConfigError,
         "val_fraction must be in (0, 1)"),
    # QM9
    Case("qm9-garbage-cache", "the cache file overwritten with garbage", D, qm9_cache(_garbage),
         _cache_error, "unreadable"),
    Case("qm9-truncated-cache", "the cache file cut in half", D, qm9_cache(_truncated), _cache_error,
         "unreadable"),
    Case("qm9-tampered-cache", "one cached target changed", D, qm9_cache(_tampered), _cache_error,
         "checksum mismatch"),
    Case("qm9-corrupt-cache-rebuilt", "building QM9 over a tampered cache", D,
         qm9_cache(_tampered, through_dataset=True), UserWarning,
         "is invalid (checksum mismatch); rebuilding"),
    Case("qm9-missing-column", "a source CSV without its SMILES column", D,
         lambda tmp: __import__("mtl.data", fromlist=["build_dataset"]).build_dataset(
             "qm9", source=str(_qm9_source(tmp / "src", 20, drop_column="SMILES")), limit=20, progress=False),
         ConfigError, "lacks columns"),
    Case("qm9-bad-subset", "`subset=5` (below one split period)", D,
         lambda tmp: __import__("mtl.data", fromlist=["build_dataset"]).build_dataset("qm9", subset=5),
         ConfigError, "qm9 subset must be an integer >= 13"),
]  # fmt: skip


def outcome(case: Case, tmp: Path) -> tuple[type[BaseException] | None, str]:
    """Run a case: the exception (or warning) class it produced and its message ('' when nothing)."""
    expected = case.expected
    if issubclass(expected, Warning):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            case.run(tmp)
        hits = [w for w in caught if issubclass(w.category, expected) and case.match in str(w.message)]
        return (hits[0].category, str(hits[0].message)) if hits else (None, "")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            case.run(tmp)
    except Exception as exc:
        return type(exc), str(exc)
    return None, ""


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_answered_by_a_clear_error(case: Case, tmp_path: Path) -> None:
    kind, message = outcome(case, tmp_path)
    assert kind is not None, f"{case.id}: accepted without a word"
    assert issubclass(kind, case.expected), f"{case.id}: {kind.__name__}: {message}"
    assert case.match in message, f"{case.id}: message does not say {case.match!r}:\n{message}"


def test_numbers_spelled_as_strings_are_numbers() -> None:
    """YAML 1.1 reads ``1e4`` as a string and ``mtl train -m sac_lr=1e-3`` passes one: both mean numbers."""
    from mtl.methods import build_method
    from study.schema import parse_study

    method = build_method("igbv2", TASKS, buffer_size="1e4", sac_lr="1e-3")
    assert method.balancer.buffer_size == 10_000 and isinstance(method.balancer.buffer_size, int)
    text = "name: ok\ndatasets: [synthetic]\nmethods: [{name: igbv2, kwargs: {buffer_size: 1e4}}]\n"
    assert parse_study(text + "train: {epochs: 2}\n").methods[0].kwargs == {"buffer_size": "1e4"}


def test_the_table_is_large_and_ids_are_unique() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) >= 20 and len(set(ids)) == len(ids)


def test_study_check_reports_every_bad_study_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same files through the CLI: exit status 2, the reason on stderr, nothing started."""
    from study.cli import main

    cases = [c for c in CASES if c.stage == S]
    for case in cases:
        folder = tmp_path / case.id
        folder.mkdir()
        with pytest.raises(case.expected):
            case.run(folder)
        assert main(["check", str(folder / "bad.yaml")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: invalid study") and case.match in err, (case.id, err)


def test_docs_table_lists_every_case() -> None:
    text = DOC.read_text()
    for case in CASES:
        row = next((line for line in text.splitlines() if line.startswith(f"| `{case.id}` |")), None)
        assert row is not None, (
            f"docs/bad_inputs.md lacks {case.id}: regenerate it (see the module docstring)"
        )
        assert f"`{case.expected.__name__}`" in row, (case.id, row)


def render(cases: list[Case] = CASES) -> str:
    """docs/bad_inputs.md: the table with the message each case actually produces."""
    lines = [
        "# What bad inputs are caught",
        "",
        "Generated from `tests/test_bad_inputs.py` (`python -m tests.test_bad_inputs > docs/bad_inputs.md`);",
        "each row is a test. *Caught by*: `study check` = the study schema (also run by `study run` before",
        "Ray starts), `Ray start` = the cluster check `study run` makes right after starting or joining Ray,",
        "before any trial is scheduled; dataset / method construction and the trial config = what a trial",
        "builds before its first training step; `mtl train` = the command line, before it builds the",
        "dataset. A corrupted QM9 cache is not an error: it is reported and rebuilt. Nothing is started (no",
        "Ray, no folder written) before a study file has passed `study check`.",
        "",
        f"{len(cases)} cases.",
        "",
        "| id | input | caught by | error | message (first line; temporary paths shortened) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for case in cases:
        with tempfile.TemporaryDirectory() as tmp:
            kind, message = outcome(case, Path(tmp))
            message = message.replace(tmp, "<tmp>")
        body = [line.strip() for line in message.splitlines() if line.strip()]
        if case.stage == S and len(body) > 1:  # "invalid study file ...:" then the problem lines
            body = body[1:]
        text = " ".join(body[:2]) if body else "(no error!)"
        text = text.replace("|", "\\|")
        if len(text) > 220:
            text = text[:217] + "..."
        name = kind.__name__ if kind is not None else "none"
        what = case.input.replace("|", "\\|")
        lines.append(f"| `{case.id}` | {what} | {case.stage} | `{name}` | {text} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
