"""The trainer: ``fit(config, reporter)`` yields one record per epoch and resumes exactly from a state dict.

A record is a flat mapping (ready for a Parquet row):
``epoch`` (0-based), ``lr``, ``steps``, ``time_train``/``time_eval``/``time_epoch`` (s),
``time_diag`` (s spent computing per-task gradients only for the diagnostics, ``grad_diagnostics=True`` on a
method that does not need them: kept out of ``time_train`` and ``time_epoch``, so epoch costs compare methods,
not diagnostics; wall time = ``time_epoch + time_diag + time_probe``),
``train_loss/<task>``, ``weight/<task>`` (epoch mean of the effective task weights),
``grad_norm/<task>`` and ``grad_cos`` (epoch mean of per-task gradient norms and of the mean pairwise
cosine similarity; NaN when not measured), ``val/<task>/<metric>``, ``test/<task>/<metric>``,
``val_loss/<task>``, ``val_delta_p``, ``test_delta_p``, ``val_delta_m``, ``test_delta_m``,
``grad_mode_chosen`` (the gradient mode the steps used: ``grad_mode``, or the one ``auto`` chose),
``probe_time/<mode>`` (``auto``: the probe's seconds per step of each exact mode; NaN otherwise) and
``time_probe`` (seconds the probe took in this epoch, outside ``time_train``), ``grad_mode_rejected``
(``auto``: why the probe rejected a mode, e.g. ``exact_vmap: aten::_cudnn_rnn_backward cannot be batched by
vmap (...)``; empty when none was; also warned as :class:`GradModeWarning`).

The reporter is called as ``reporter(record, checkpoint)``; ``checkpoint()`` returns the full state dict
(model, optimizer, LR scheduler, method state, RNG states, records so far) to save, and raising
:class:`StopTraining` from the reporter ends training cleanly after that epoch.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch

from mtl.config import TrainConfig, resolve_config
from mtl.context import StepContext
from mtl.data import MTLDataset, build_dataset
from mtl.data.references import resolve as resolve_references
from mtl.errors import ConfigError
from mtl.evaluation import delta_m, delta_p
from mtl.methods import Method, build_method
from mtl.models.base import MultiTaskModel
from mtl.step import StepStats, backward
from mtl.step_hooks import BatchStream, StepProbe
from mtl.training.devices import resolve_device
from mtl.training.evaluate import evaluate
from mtl.training.grad_modes import AUTO_MODE, EXACT_MODES, check_grad_mode_fits
from mtl.training.lr_schedulers import build_lr_scheduler, step_lr_scheduler
from mtl.training.optimizers import build_optimizer
from mtl.training.rng import rng_state, seed_everything, set_rng_state

STATE_VERSION = 1
Record = dict[str, Any]
Reporter = Callable[[Record, Callable[[], dict[str, Any]]], None]


class GradModeWarning(UserWarning):
    """``grad_mode: auto`` rejected a mode (the probe's reason is in the message and the records)."""


class StopTraining(Exception):
    """Raise from a reporter to stop after the current epoch."""


class Trainer:
    """Holds a run's objects; :func:`fit` is the functional entry point."""

    def __init__(self, config: TrainConfig, dataset: MTLDataset | None = None) -> None:
        config.ensure_valid()
        self.dataset = (
            dataset if dataset is not None else build_dataset(config.dataset, **config.dataset_kwargs)
        )
        self.config = resolve_config(config, self.dataset)
        self.device = resolve_device(self.config.device)
        seed_everything(self.config.seed)
        self.model: MultiTaskModel = self.dataset.build_model(
            self.config.architecture, **self.config.model_kwargs
        )
        self.model.to(self.device)
        check_grad_mode_fits(
            self.config.grad_mode, self.config.architecture, self.model.has_shared_representation
        )
        self.task_names = self.dataset.task_names
        self.method: Method = build_method(
            self.config.method, self.task_names, seed=self.config.seed, **self.config.method_kwargs
        ).to(self.device)
        self.shared_params = [p for p in self.model.shared_parameters() if p.requires_grad]
        self.other_params = [p for p in self.model.task_parameters() if p.requires_grad]
        self.other_params += list(self.method.extra_parameters())
        self._check_parameter_split()
        self.optimizer = build_optimizer(
            self.config.optimizer,
            [*self.model.parameters(), *self.method.extra_parameters()],
            lr=self.config.lr,
            weight_decay=self.config.weight_decay,
        )
        self.lr_scheduler = build_lr_scheduler(
            self.config.scheduler, self.config.scheduler_kwargs, self.optimizer, epochs=self.config.epochs
        )
        self.initial_lr = float(self.config.lr)
        if self.config.reference is not None:
            self.reference: dict | None = self.config.reference
            self.reference_delta_m: dict | None = self.config.reference
        else:  # published rows: the named table, else the (dataset, architecture) defaults (Δp and Δm)
            self.reference, self.reference_delta_m = resolve_references(
                self.dataset.name,
                self.config.architecture,
                self.config.reference_table,
                self.dataset.reference,
            )
        self.higher_is_better = self.dataset.higher_is_better
        self.epoch = 0  # next epoch to run
        self.global_step = 0
        self.records: list[Record] = []
        self.loader = self._batch_loader()
        # grad_mode "auto": the exact mode chosen by the probe at the first epoch (mtl.grad_probe)
        auto = self.config.grad_mode == AUTO_MODE
        self.grad_mode_chosen: str | None = None if auto else self.config.grad_mode
        self.probe_times: dict[str, float] = {}
        self.probe_rejected: dict[str, str] = {}  # auto: why the probe rejected a mode (mode -> reason)
        # step hooks (DESIGN §8): the validation streams a method draws from, by split (their positions are
        # part of the state); built only when a part declares needs_validation_batch
        self.streams: dict[str, BatchStream] = {}

    def _batch_loader(self) -> Callable[..., Iterable[Any]]:
        """``dataset.loader``, or the dataset's device-resident loader (``device_batches``; default: on CUDA
        when the dataset has a ``device_loader``)."""
        make = getattr(self.dataset, "device_loader", None)
        wanted = self.config.device_batches
        if wanted is None:
            wanted = self.device.type == "cuda" and callable(make)
        if not wanted:
            return self.dataset.loader
        if not callable(make):
            raise ConfigError(
                f"device_batches=true: dataset '{self.config.dataset}' has no device-resident batches "
                f"(no device_loader); set device_batches to false or null"
            )
        return make(self.device).loader

    def resolve_grad_mode(self) -> float:
        """Resolve ``grad_mode: auto`` by the probe (:func:`mtl.grad_probe.probe_grad_modes`) if it has not
        run yet; returns the seconds the probe took (0 when nothing was probed). The probe leaves the model,
        optimiser, method and RNG states as it found them."""
        if self.grad_mode_chosen is not None:
            return 0.0
        from mtl.grad_probe import probe_grad_modes

        result = probe_grad_modes(self, EXACT_MODES)
        self.grad_mode_chosen, self.probe_times = result.chosen, dict(result.times)
        self.probe_rejected = dict(result.rejected)
        for reason in self.probe_rejected.values():
            warnings.warn(f"grad_mode auto rejected {reason}; using '{result.chosen}'", GradModeWarning, 2)
        return result.seconds

    @property
    def grad_mode(self) -> str:
        """The gradient mode the steps use (``auto`` resolved by :meth:`resolve_grad_mode`)."""
        if self.grad_mode_chosen is None:
            raise RuntimeError("grad_mode 'auto' is not resolved yet: call resolve_grad_mode() first")
        return self.grad_mode_chosen

    def _check_parameter_split(self) -> None:
        shared = {id(p) for p in self.shared_params}
        task = {id(p) for p in self.model.task_parameters()}
        if shared & task:
            raise ValueError("a parameter is both shared and task-specific")
        missing = [
            n for n, p in self.model.named_parameters() if p.requires_grad and id(p) not in shared | task
        ]
        if missing:
            raise ValueError(f"parameters neither shared nor task-specific: {missing[:5]}")

    # -- state -------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "config": self.config.to_dict(),
            "epoch": self.epoch,
            "global_step": self.global_step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            # the LR scheduler, under the key checkpoints have always used
            "scheduler": self.lr_scheduler.state_dict() if self.lr_scheduler is not None else None,
            "method": self.method.state_dict(),
            "rng": rng_state(),
            "records": [dict(r) for r in self.records],
            "grad_mode_chosen": self.grad_mode_chosen,
            "probe_times": dict(self.probe_times),
            "probe_rejected": dict(self.probe_rejected),
            "streams": {split: stream.state_dict() for split, stream in self.streams.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ConfigError(f"checkpoint version {state.get('version')} is not {STATE_VERSION}")
        saved = state["config"]
        for key in ("dataset", "method", "seed", "architecture", "method_kwargs", "dataset_kwargs"):
            if saved.get(key) != self.config.to_dict()[key]:
                raise ConfigError(
                    f"checkpoint was made with {key}={saved.get(key)!r}, "
                    f"this run has {key}={self.config.to_dict()[key]!r}"
                )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.lr_scheduler is not None and state["scheduler"] is not None:
            self.lr_scheduler.load_state_dict(state["scheduler"])
        self.method.load_state_dict(state["method"])
        set_rng_state(state["rng"])
        self.epoch = int(state["epoch"])
        self.global_step = int(state["global_step"])
        self.records = [dict(r) for r in state["records"]]
        self.streams = {}
        for split, position in (state.get("streams") or {}).items():
            self._stream(split).load_state_dict(position)
        if self.config.grad_mode == AUTO_MODE and state.get("grad_mode_chosen") is not None:
            self.grad_mode_chosen = str(state["grad_mode_chosen"])  # a resumed trial keeps its choice
            self.probe_times = dict(state.get("probe_times") or {})
            self.probe_rejected = dict(state.get("probe_rejected") or {})

    # -- training ----------------------------------------------------------------------------------
    def steps_per_epoch(self) -> int:
        n = math.ceil(self.dataset.split_size("train") / self.config.batch_size)
        return min(n, self.config.max_steps_per_epoch) if self.config.max_steps_per_epoch else n

    def current_lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def _stream(self, split: str) -> BatchStream:
        if split not in self.streams:
            self.dataset.split_size(split)  # an unknown split fails here, not mid-stream
            self.streams[split] = BatchStream(self.loader, split, self.config.batch_size, self.config.seed)
        return self.streams[split]

    def validation_batch(self, split: str = "val") -> tuple[Any, Any]:
        """The next batch (on the device) of ``split``'s cycling, seeded stream (:class:`BatchStream`)."""
        inputs, targets = self._stream(split).next()
        return self.dataset.to_device(inputs, self.device), self.dataset.to_device(targets, self.device)

    def compute_losses(self, inputs: Any, targets: Any) -> torch.Tensor:
        """Forward and per-task losses [T] with the model as it is now (grad mode: the caller's)."""
        return self.dataset.losses(self.model(inputs), targets)

    def step_probe(self, ctx: StepContext, inputs: Any, targets: Any) -> StepProbe:
        """The :class:`StepProbe` handed to the method's step hooks (DESIGN §8)."""
        return StepProbe(
            ctx=ctx,
            inputs=inputs,
            targets=targets,
            losses=None,
            model=self.model,
            optimizer=self.optimizer,
            compute_losses=self.compute_losses,
            validation_batch=self.validation_batch if self.method.needs_validation_batch else None,
        )

    def train_step(
        self,
        inputs: Any,
        targets: Any,
        step_in_epoch: int,
        steps_per_epoch: int,
        grad_mode: str,
        diagnostics: bool = False,
    ) -> tuple[torch.Tensor, StepStats]:
        """One optimisation step on a batch already on the device (DESIGN §2): forward, the task losses, the
        method's backward with ``grad_mode``, the optimiser step. Returns the losses [T] and the step stats;
        ``global_step`` is the caller's to advance. A method with step hooks (:mod:`mtl.step_hooks`) gets
        ``before_step`` after ``zero_grad`` and ``after_step`` after the optimiser step."""
        self.optimizer.zero_grad(set_to_none=True)
        ctx = StepContext(
            epoch=self.epoch,
            step=self.global_step + 1,
            step_in_epoch=step_in_epoch,
            steps_per_epoch=steps_per_epoch,
            lr_ratio=self.initial_lr / self.current_lr(),
        )
        probe = self.step_probe(ctx, inputs, targets) if self.method.has_step_hooks else None
        if probe is not None:
            self.method.before_step(probe)
        split_rep = grad_mode == "rep" or (grad_mode == "exact_vmap" and self.model.has_shared_representation)
        if split_rep:  # forward == decode(encode(x)); the gradient engine needs z
            rep = self.model.encode(inputs)
            preds = self.model.decode(rep)
        else:
            rep, preds = None, self.model(inputs)
        losses = self.dataset.losses(preds, targets)
        stats = backward(
            self.method,
            losses,
            ctx,
            task_names=self.task_names,
            shared_params=self.shared_params,
            other_params=self.other_params,
            grad_mode=grad_mode,
            rep=rep,
            diagnostics=diagnostics,
        )
        self.optimizer.step()
        if probe is not None:
            probe.losses = losses.detach()
            self.method.after_step(probe)
        return losses, stats

    def _first_step(
        self, inputs: Any, targets: Any, steps: int, grad_mode: str, diagnostics: bool
    ) -> tuple[torch.Tensor, StepStats]:
        """An epoch's first step: a batched mode (``exact_vmap``) that fails on an operator vmap cannot batch
        raises :class:`~mtl.grad_probe.GradModeError` naming it (at trial start, not as an opaque error)."""
        try:
            return self.train_step(inputs, targets, 0, steps, grad_mode, diagnostics=diagnostics)
        except (RuntimeError, NotImplementedError) as exc:
            if grad_mode != "exact_vmap":
                raise
            from mtl.grad_probe import GradModeError, mode_failure

            raise GradModeError(
                f"grad_mode {mode_failure(grad_mode, exc)} on this model and device "
                f"({self.config.architecture} on {self.device.type}); use grad_mode 'exact' or 'auto'"
            ) from exc

    def train_epoch(self, progress: bool = False) -> dict[str, Any]:
        cfg, T = self.config, len(self.task_names)
        self.resolve_grad_mode()  # no-op unless grad_mode is "auto" and not yet probed
        grad_mode = self.grad_mode
        steps = self.steps_per_epoch()
        # Epoch statistics are summed on the device (float64, the same sums as on the host) and read once at
        # the end of the epoch, so the steps never wait for a device-to-host copy.
        acc = torch.zeros(3 * T + 2, dtype=torch.float64, device=self.device)
        loss_sum, weight_sum, norm_sum = acc[:T], acc[T : 2 * T], acc[2 * T : 3 * T]
        cos_acc = acc[3 * T :]  # [sum of finite cosines, their count]
        n_norm = 0
        time_diag = 0.0
        self.model.train()
        batches = self.loader("train", cfg.batch_size, shuffle=True, seed=cfg.seed, epoch=self.epoch)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=steps, desc=f"epoch {self.epoch + 1}/{cfg.epochs}", leave=False, unit="step")
        done = 0
        for i, (inputs, targets) in enumerate(batches):
            if i >= steps:
                break
            inputs, targets = (
                self.dataset.to_device(inputs, self.device),
                self.dataset.to_device(targets, self.device),
            )
            diagnostics = cfg.grad_diagnostics and i == 0 and not self.method.needs_task_gradients
            if i == 0:  # a mode that cannot run on this model and device fails here, naming the operator
                losses, stats = self._first_step(inputs, targets, steps, grad_mode, diagnostics)
            else:
                losses, stats = self.train_step(inputs, targets, i, steps, grad_mode, diagnostics=diagnostics)
            self.global_step += 1
            done += 1
            time_diag += stats.time_diag
            loss_sum += losses.detach().to(acc)
            weight_sum += stats.weights.detach().to(acc)
            if stats.grad_norms is not None:
                norm_sum += stats.grad_norms.detach().to(acc)
                n_norm += 1
            if stats.grad_cos is not None:
                cos = torch.as_tensor(stats.grad_cos).detach().to(acc)
                finite = torch.isfinite(cos)
                cos_acc[0] += torch.where(finite, cos, torch.zeros_like(cos))
                cos_acc[1] += finite.to(acc)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{float(losses.detach().sum()):.4g}")
        if bar is not None:
            bar.close()
        if done == 0:
            raise ConfigError("the training split produced no batches")
        host = acc.cpu()  # the epoch's one synchronisation
        loss_sum, weight_sum, norm_sum = host[:T], host[T : 2 * T], host[2 * T : 3 * T]
        cos_sum, n_cos = float(host[3 * T]), int(host[3 * T + 1])
        mean_losses = (loss_sum / done).float()
        self.method.balancer.end_epoch(self.epoch, mean_losses)
        nan = float("nan")
        out: dict[str, Any] = {"steps": done, "time_diag": time_diag}
        for t, name in enumerate(self.task_names):
            out[f"train_loss/{name}"] = float(mean_losses[t])
            out[f"weight/{name}"] = float(weight_sum[t] / done)
            out[f"grad_norm/{name}"] = float(norm_sum[t] / n_norm) if n_norm else nan
        out["grad_cos"] = cos_sum / n_cos if n_cos else nan
        return out

    def run_epoch(self, progress: bool = False) -> Record:
        record: Record = {"epoch": self.epoch, "lr": self.current_lr()}
        time_probe = self.resolve_grad_mode()  # grad_mode "auto": the probe, timed apart from training
        record["grad_mode_chosen"] = self.grad_mode
        record["time_probe"] = time_probe
        for mode in EXACT_MODES:
            record[f"probe_time/{mode}"] = float(self.probe_times.get(mode, float("nan")))
        record["grad_mode_rejected"] = "; ".join(self.probe_rejected[m] for m in sorted(self.probe_rejected))
        t0 = time.perf_counter()
        record.update(self.train_epoch(progress=progress))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t1 = time.perf_counter()
        bs = self.config.batch_size
        val, val_loss = evaluate(self.model, self.dataset, "val", bs, self.device, self.loader)
        test, _ = evaluate(self.model, self.dataset, "test", bs, self.device, self.loader)
        for name, split in (("val", val), ("test", test)):
            for task, metrics in split.items():
                for metric, value in metrics.items():
                    record[f"{name}/{task}/{metric}"] = float(value)
        for t, name in enumerate(self.task_names):
            record[f"val_loss/{name}"] = float(val_loss[t])
        nan = float("nan")
        for key, summary, ref in (
            ("delta_p", delta_p, self.reference),
            ("delta_m", delta_m, self.reference_delta_m),
        ):
            for name, split in (("val", val), ("test", test)):
                record[f"{name}_{key}"] = (
                    summary(split, ref, self.higher_is_better) if ref is not None else nan
                )
        t2 = time.perf_counter()
        diag = record["time_diag"]  # diagnostics-only gradients: timed apart, out of every epoch cost
        record.update(time_train=t1 - t0 - diag, time_eval=t2 - t1, time_epoch=t2 - t0 - diag)
        step_lr_scheduler(self.lr_scheduler, record["val_delta_p"], val_loss)
        self.records.append(record)
        self.epoch += 1
        return record


def fit(
    config: TrainConfig,
    reporter: Reporter | None = None,
    state: dict[str, Any] | None = None,
    *,
    dataset: MTLDataset | None = None,
    progress: bool = False,
) -> list[Record]:
    """Train ``config`` for ``config.epochs`` epochs (or resume from ``state``) and return all records.

    Bit-identical on CPU whether or not the run was interrupted and resumed from a checkpoint state:
    data order is a function of (seed, epoch) and every RNG is restored.
    """
    trainer = Trainer(config, dataset=dataset)
    if state is not None:
        trainer.load_state_dict(state)
    return train_to_end(trainer, reporter, progress=progress)


def train_to_end(
    trainer: Trainer, reporter: Reporter | None = None, *, progress: bool = False
) -> list[Record]:
    """The one epoch loop: run ``trainer``'s remaining epochs, handing each epoch's record and a getter of
    the trainer's state to ``reporter`` (which may end the run early by raising :class:`StopTraining`; any
    other exception propagates). :func:`fit` and the study's trials (:mod:`study.trial`) both use it."""
    while trainer.epoch < trainer.config.epochs:
        record = trainer.run_epoch(progress=progress)
        if reporter is not None:
            try:
                reporter(record, trainer.state_dict)
            except StopTraining:
                break
    return trainer.records
