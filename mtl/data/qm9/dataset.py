"""The QM9 dataset (:class:`QM9Dataset`, registered as ``qm9``) with the Gilmer MPNN."""

from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mtl.checks import check_architecture, check_choice
from mtl.config import TrainDefaults
from mtl.data.base import MTLDataset, TaskSpec, epoch_order
from mtl.data.qm9.batching import make_batch, select_split
from mtl.data.qm9.constants import (
    CACHE_VERSION,
    FEATURE_SETS,
    GRAPHS,
    MAX_MOLECULES,
    NUM_EDGE_FEATURES,
    NUM_NODE_FEATURES,
    SPLIT_PERIOD,
    TASKS,
)
from mtl.data.qm9.features import MoleculeGraph, featurize
from mtl.data.qm9.metrics import QM9MAE
from mtl.data.qm9.source import RawQM9, parse_xyz, read_source, source_dir, source_fingerprint
from mtl.data.qm9.split import split_of_rank, split_permutation
from mtl.data.qm9.store import CacheError, MoleculeStore, default_cache_dir, file_lock, load_cache, save_cache
from mtl.data.registry import DATASETS
from mtl.errors import ConfigError
from mtl.models.base import MultiTaskModel
from mtl.models.heads import LinearHeads
from mtl.models.hps import HPS
from mtl.models.moe import MOE_ARCHITECTURES, MOE_ARGUMENTS, build_moe_model, moe_arguments
from mtl.models.moe_experts import MPNNFamily
from mtl.models.mpnn import CONV_IMPLEMENTATIONS, MPNNEncoder


@DATASETS.register("qm9")
class QM9Dataset(MTLDataset):
    """QM9 with the Gilmer MPNN (see the module docstring).

    ``subset``: use the first ``subset`` usable molecules of π (quick CPU runs; only those are
    featurized). ``limit``: read only the first ``limit`` source rows, no cache (tests). ``graph``:
    ``complete`` (the papers') or ``bond``. ``features``: ``reference`` (default: PyG's inputs, as the papers'
    models saw them) or ``rdkit`` (sanitised; see the module docstring). ``cache_dir``: default
    :func:`default_cache_dir`;
    ``source``: a directory with the qm9pack CSVs (default: the installed package's). ``rebuild``: ignore
    an existing cache. ``progress``: show the featurization progress bar and a summary on stderr.
    """

    name = "qm9"
    tasks = tuple(TaskSpec(t, {"mae": False}) for t in TASKS)
    defaults = TrainDefaults(  # and Adam, lr 1e-3, batch 128: the settings' paper defaults
        scheduler="plateau",
        scheduler_kwargs={"factor": 0.7, "patience": 5, "min_lr": 1e-5},
        epochs=300,
    )
    architectures = ("hps", *MOE_ARCHITECTURES)
    model_arguments = ("dim", "steps", "set2set_steps", "conv", *MOE_ARGUMENTS)

    def __init__(
        self,
        subset: int | None = None,
        limit: int | None = None,
        split_seed: int = 0,
        graph: str = "complete",
        features: str = "reference",
        cache_dir: str | os.PathLike[str] | None = None,
        source: str | os.PathLike[str] | None = None,
        rebuild: bool = False,
        progress: bool = True,
    ) -> None:
        self.check_arguments(
            {"subset": subset, "limit": limit, "split_seed": split_seed, "graph": graph, "features": features}
        )
        self.subset, self.limit, self.split_seed, self.graph = subset, limit, int(split_seed), graph
        self.features = features
        self.progress = progress
        self.source_dir = Path(source) if source is not None else source_dir()
        self.cache_path = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / (
            f"qm9-v{CACHE_VERSION}-{features}.pt"
        )
        self._raw: RawQM9 | None = None
        self._fingerprint: list[str] = []
        self._ignore_disk = False
        t0 = time.perf_counter()
        store, num_rows = self._load_store(rebuild)
        store, chosen = self._choose(store, num_rows)
        self.build_seconds = time.perf_counter() - t0
        self.stats = store.stats()
        self.stats.update(source_rows=num_rows, used=len(chosen))

        by_split: dict[str, list[int]] = {"train": [], "val": [], "test": []}
        for k, row in enumerate(chosen):
            by_split[split_of_rank(k)].append(store.index_of[row])
        self.splits = {s: select_split(store, idx) for s, idx in by_split.items()}
        for s, data in self.splits.items():
            self.stats[f"num_{s}"] = len(data)
        if len(self.splits["train"]) < 2:
            raise ConfigError("qm9: fewer than 2 training molecules; raise subset/limit")
        y_train = self.splits["train"].y
        self.target_mean = y_train.mean(0)
        self.target_std = y_train.std(0).clamp_min(1e-12)
        self._z = {s: ((d.y - self.target_mean) / self.target_std).float() for s, d in self.splits.items()}

    @classmethod
    def check_arguments(cls, args: Mapping[str, Any]) -> None:
        subset, limit, graph = args.get("subset"), args.get("limit"), args.get("graph", "complete")
        if subset is not None and (not isinstance(subset, int) or subset < SPLIT_PERIOD):
            raise ConfigError(f"qm9 subset must be an integer >= {SPLIT_PERIOD}, got {subset!r}")
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise ConfigError(f"qm9 limit must be a positive integer, got {limit!r}")
        if graph not in GRAPHS:
            raise ConfigError(f"qm9 graph must be {' or '.join(map(repr, GRAPHS))}, got {graph!r}")
        features = args.get("features", "reference")
        check_choice("qm9", "features", features, FEATURE_SETS)
        super().check_arguments(args)

    @classmethod
    def check_model_arguments(cls, architecture: str, kwargs: Mapping[str, Any]) -> None:
        super().check_model_arguments(architecture, kwargs)
        moe_arguments(cls.name, architecture, kwargs)
        for key, limit in (("dim", 4096), ("steps", 100), ("set2set_steps", 100)):
            value = kwargs.get(key, 1)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
                raise ConfigError(
                    f"qm9 model argument {key} must be an integer in [1, {limit}], got {value!r}"
                )
        if kwargs.get("conv", "factorized") not in CONV_IMPLEMENTATIONS:
            valid = ", ".join(CONV_IMPLEMENTATIONS)
            raise ConfigError(f"qm9 model argument conv must be one of {valid}, got {kwargs['conv']!r}")

    # -- building ------------------------------------------------------------------------------------
    def _raw_source(self) -> RawQM9:
        if self._raw is None:
            self._raw = read_source(self.source_dir, self.limit)
        return self._raw

    def _featurize_rows(self, store: MoleculeStore, rows: Sequence[int], desc: str) -> None:
        from tqdm.auto import tqdm

        raw = self._raw_source()
        results: list[MoleculeGraph | str] = []
        for row in tqdm(rows, desc=desc, unit="mol", disable=not self.progress, file=sys.stderr):
            try:
                positions = parse_xyz(raw.xyz[row])
            except ValueError:
                results.append("atoms")
                continue
            results.append(featurize(raw.smiles[row], raw.elements[row], positions, self.features))
        store.add(rows, results, raw.y[list(rows)])

    def _load_store(self, rebuild: bool) -> tuple[MoleculeStore, int]:
        """The store (from the cache when possible) and the number of source rows."""
        if self.limit is not None:  # tests / debugging: straight from the CSVs, no cache
            return MoleculeStore(), len(self._raw_source())
        self._fingerprint = source_fingerprint(self.source_dir)
        if not rebuild and self.cache_path.is_file():
            try:
                store, meta = load_cache(self.cache_path, self._fingerprint, self.features)
                return store, int(meta["num_rows"])
            except CacheError as exc:
                warnings.warn(f"QM9 cache {self.cache_path} is invalid ({exc}); rebuilding it", stacklevel=3)
        self._ignore_disk = True  # rebuild: never merge with what is on disk
        return MoleculeStore(), len(self._raw_source())

    def _ensure(self, store: MoleculeStore, rows: Sequence[int], num_rows: int, desc: str) -> MoleculeStore:
        """Featurize the rows of ``rows`` the store lacks, and (unless ``limit``) update the cache under a
        file lock, first picking up what concurrent builders cached meanwhile."""
        if all(store.known(r) for r in rows):
            return store
        t0 = time.perf_counter()
        if self.limit is not None:
            missing = [r for r in rows if not store.known(r)]
            self._featurize_rows(store, missing, desc)
        else:
            with file_lock(self.cache_path.with_name(self.cache_path.name + ".lock")):
                if not self._ignore_disk and self.cache_path.is_file():
                    with contextlib.suppress(CacheError):
                        disk, _ = load_cache(self.cache_path, self._fingerprint, self.features)
                        if all(disk.known(r) for r in store.index_of) and len(disk) >= len(store):
                            store = disk
                missing = [r for r in rows if not store.known(r)]
                self._featurize_rows(store, missing, desc)
                save_cache(self.cache_path, store, self._fingerprint, num_rows, self.features)
                self._ignore_disk = False
        self._report(store, time.perf_counter() - t0, len(missing))
        return store

    def _choose(self, store: MoleculeStore, num_rows: int) -> tuple[MoleculeStore, list[int]]:
        """The used source rows in π order (the first ``subset`` or 130,000 usable ones), featurizing and
        caching what is missing: everything for the full set, only the subset's molecules otherwise."""
        pi = split_permutation(num_rows, self.split_seed).tolist()
        if self.subset is None:
            store = self._ensure(
                store, range(num_rows), num_rows, "QM9: featurizing molecules (one-time cache build)"
            )
        target = min(self.subset or MAX_MOLECULES, num_rows)
        chosen: list[int] = []
        pos = 0
        while len(chosen) < target and pos < num_rows:
            block = pi[pos : pos + (target - len(chosen))]
            store = self._ensure(store, block, num_rows, "QM9: featurizing the subset's molecules")
            chosen.extend(r for r in block if r in store.index_of)
            pos += len(block)
        if self.subset is not None and len(chosen) < self.subset:
            raise ConfigError(f"qm9 subset={self.subset} exceeds the {len(chosen)} usable molecules")
        return store, chosen

    def _report(self, store: MoleculeStore, seconds: float, processed: int) -> None:
        if not self.progress:
            return
        s = store.stats()
        reasons = ", ".join(f"{k} {v}" for k, v in s["dropped_by_reason"].items() if v) or "none"
        print(
            f"QM9: featurized {processed} molecules in {seconds:.1f}s; cache holds {s['featurized']} "
            f"(aligned exactly {s['exact_alignment']}, with extra contacts {s['embedded_alignment']}), "
            f"dropped {s['dropped']} ({reasons})",
            file=sys.stderr,
            flush=True,
        )

    # -- the MTLDataset contract ------------------------------------------------------------------
    def split_size(self, split: str) -> int:
        return len(self.splits[split])

    def loader(self, split: str, batch_size: int, shuffle: bool, seed: int, epoch: int) -> Iterator[Any]:
        data, z = self.splits[split], self._z[split]
        n = len(data)
        order = epoch_order(n, shuffle, seed, epoch)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            yield make_batch(data, idx, self.graph), {t: z[idx, i] for i, t in enumerate(TASKS)}

    def device_loader(self, device: torch.device | str) -> Any:
        """The batches of :meth:`loader`, gathered on ``device`` from tensors resident there
        (:class:`mtl.data.qm9.device.QM9DeviceBatches`; its ``loader`` has this ``loader``'s signature)."""
        from mtl.data.qm9.device import QM9DeviceBatches

        return QM9DeviceBatches(self.splits, self._z, TASKS, self.graph, device)

    def build_model(self, architecture: str = "hps", **kwargs: Any) -> MultiTaskModel:
        """HPS over the Gilmer MPNN (:class:`mtl.models.mpnn.MPNNEncoder`) with 11 ``Linear(dim, 1)``
        heads, or a MoE architecture (:mod:`mtl.models.moe`) whose experts are copies of that MPNN.
        Model kwargs: ``dim`` (64), ``steps`` (3), ``set2set_steps`` (3), ``conv`` (``factorized`` |
        ``pyg``), and the MoE arguments (:data:`mtl.models.moe.MOE_ARGUMENTS`)."""
        self.check_model_arguments(architecture, kwargs)
        architecture = check_architecture(self.name, architecture, self.architectures)
        dim = int(kwargs.pop("dim", 64))
        encoder_kwargs = {
            "num_node_features": NUM_NODE_FEATURES,
            "num_edge_features": NUM_EDGE_FEATURES,
            "dim": dim,
            "steps": int(kwargs.pop("steps", 3)),
            "set2set_steps": int(kwargs.pop("set2set_steps", 3)),
            "conv": str(kwargs.pop("conv", "factorized")),
        }
        try:
            if architecture in MOE_ARCHITECTURES:
                heads = {t: nn.Linear(dim, 1) for t in TASKS}
                family = MPNNFamily(**encoder_kwargs)
                return build_moe_model(architecture, family, heads, dataset=self.name, **kwargs)
            encoder = MPNNEncoder(**encoder_kwargs)
        except ValueError as exc:
            raise ConfigError(f"qm9 model: {exc}") from exc
        # the 11 Linear(dim, 1) heads stacked into one layer (one kernel; the same initial weights)
        return HPS(encoder, LinearHeads(TASKS, dim, 1))

    def losses(self, preds: Mapping[str, Tensor], targets: Mapping[str, Tensor]) -> Tensor:
        """MSE per target on z-scored targets, [11] in :data:`TASKS` order: one ``[B, 11]`` difference and
        one mean over the batch (a handful of kernels, where a loss per task took four each)."""
        pred = torch.cat([preds[t].reshape(-1, 1) for t in TASKS], dim=1)
        target = torch.stack([targets[t].reshape(-1) for t in TASKS], dim=1)
        return (pred - target.to(pred.dtype)).square().mean(dim=0)

    def metric_accumulator(self) -> QM9MAE:
        return QM9MAE(TASKS, self.target_std)

    def describe(self) -> str:
        """A one-line summary (sizes, drops)."""
        s = self.stats
        return (
            f"qm9: {s['num_train']}/{s['num_val']}/{s['num_test']} train/val/test of {s['source_rows']} "
            f"source rows; {s['dropped']} dropped so far ({s['dropped_by_reason']})"
        )
