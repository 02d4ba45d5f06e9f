"""``mtl`` command line: train one configuration and print per-epoch progress; list methods and datasets.

mtl train --dataset synthetic --method db_mtl --seed 0 --epochs 3
mtl train --dataset synthetic --method db_mtl -m beta=0.5 -m alpha_strategy=mean
mtl methods
mtl references qm9_igb
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import yaml

from mtl.best_epoch import best_record
from mtl.errors import MTLError, run_command


def _parse_pairs(pairs: list[str], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise MTLError(f"{what} '{pair}' must look like key=value")
        key, value = pair.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def _fmt(x: float) -> str:
    return "nan" if isinstance(x, float) and math.isnan(x) else f"{x:.4g}"


def format_record(
    record: dict[str, Any], epochs: int, task_names: list[str], aggregator: str | None = None
) -> str:
    """One progress line. Epochs are counted from 1 here (the record's ``epoch`` is 0-based). ``w`` are the
    effective task weights; a method with an aggregator (e.g. DB-MTL's ``max_norm``) balances the task
    gradients there, which ``agg=<name>`` says, since its loss weights alone (often all 1) do not show it."""
    losses = " ".join(f"{t}={_fmt(record[f'train_loss/{t}'])}" for t in task_names)
    weights = " ".join(_fmt(record[f"weight/{t}"]) for t in task_names)
    balance = f"w[{weights}]" + (f" agg={aggregator}" if aggregator else "")
    return (
        f"epoch {record['epoch'] + 1:>3}/{epochs}  loss[{losses}]  {balance}  "
        f"val Δp {record['val_delta_p']:+.2f}%  test Δp {record['test_delta_p']:+.2f}%  "
        f"{record['time_epoch']:.1f}s"
    )


def _open_out(path: str | None) -> Any:
    """The ``--out`` file opened for writing, its missing parent folders created: done before the dataset is
    built, so a path that cannot be written fails at once."""
    if path is None:
        return None
    blocked = next((p for p in Path(path).parents if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        raise MTLError(f"--out {path}: '{blocked}' is a file, not a folder")
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return open(path, "w")  # closed by cmd_train
    except OSError as exc:
        raise MTLError(f"--out {path}: cannot write it ({exc.strerror or exc})") from None


def cmd_train(args: argparse.Namespace) -> int:
    from mtl.config import TrainConfig, flag_fields, resolve_config
    from mtl.data import build_dataset
    from mtl.methods import parse_method
    from mtl.train import fit

    config = TrainConfig.from_dict(
        {f.name: getattr(args, f.name) for _, f, _ in flag_fields()}
        | {
            "method_kwargs": _parse_pairs(args.method_arg, "method argument"),
            "dataset_kwargs": _parse_pairs(args.dataset_arg, "dataset argument"),
        }
    )
    if args.subset is not None:
        config.dataset_kwargs["subset"] = args.subset
    aggregator = parse_method(config.method).aggregator
    out = _open_out(args.out)
    try:
        print(f"building dataset '{config.dataset}' ...", file=sys.stderr, flush=True)
        dataset = build_dataset(config.dataset, **config.dataset_kwargs)
        names = dataset.task_names

        def reporter(record: dict[str, Any], _checkpoint: Any) -> None:
            print(format_record(record, epochs, names, aggregator), flush=True)
            if out is not None:
                out.write(json.dumps(record) + "\n")
                out.flush()

        epochs = resolve_config(config, dataset).epochs
        print(
            f"training {config.method} on {config.dataset} ({len(names)} tasks, seed {config.seed}, "
            f"{epochs} epochs)",
            flush=True,
        )
        records = fit(config, reporter, dataset=dataset, progress=args.progress)
    finally:
        if out is not None:
            out.close()
    best = best_record(records)
    if best is None:
        print("best val Δp: none (no epoch had a finite validation Δp)")
    else:
        print(
            f"best val Δp {best['val_delta_p']:+.2f}% at epoch {best['epoch'] + 1} "
            f"(test Δp {best['test_delta_p']:+.2f}%)"
        )
    return 0


def cmd_methods(_args: argparse.Namespace) -> int:
    from mtl.aggregators import AGGREGATORS
    from mtl.balancers import BALANCERS
    from mtl.method_papers import describe
    from mtl.methods import METHOD_ALIASES

    def show(registry: Any, name: str) -> None:
        what, paper = describe(name)
        print(f"  {name:<12} {what} [{paper}]")
        parameters = registry.parameters(name)
        mappings = getattr(registry.factory(name), "mapping_kwargs", ())
        params = ", ".join(
            f"{k}.<task>=1.0" if k in mappings else f"{k}={p.default!r}" for k, p in parameters.items()
        )
        if params:
            print(f"  {'':<12} {params}")

    print("balancers (use alone, or as '<balancer>+<aggregator>'):")
    for name in BALANCERS.names():
        show(BALANCERS, name)
    print("aggregators (alone = EW losses + the aggregator):")
    for name in AGGREGATORS.names():
        show(AGGREGATORS, name)
    print("aliases:")
    for alias, target in sorted(METHOD_ALIASES.items()):
        print(f"  {alias:<12} = {target}")
    return 0


def cmd_datasets(_args: argparse.Namespace) -> int:
    from mtl.data import DATASETS

    for name in DATASETS.names():
        params = ", ".join(f"{k}={p.default!r}" for k, p in DATASETS.parameters(name).items())
        print(f"  {name:<12} {params}")
    return 0


def cmd_references(args: argparse.Namespace) -> int:
    """Print the published STL tables (all, or the one named) and the (dataset, architecture) defaults."""
    from mtl.data.references import DEFAULTS, TABLES, check_table_name, table_names

    names = [check_table_name(args.name)] if args.name else table_names()
    for name in names:
        table = TABLES[name]
        print(f"{name}: {table.dataset}, {table.backbone} -- {table.source}")
        for task, metrics in table.rows.items():
            values = "  ".join(f"{metric}={value:g}" for metric, value in metrics.items())
            print(f"  {task:<14} {values}")
    if not args.name:
        print("defaults (dataset, architecture: delta_p table, delta_m table):")
        for (dataset, arch), d in DEFAULTS.items():
            print(f"  {dataset:<12} {arch:<13} {d.delta_p or 'none'}, {d.delta_m or 'none'}")
    return 0


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """An option for every :class:`mtl.config.TrainConfig` field that declares one
    (:func:`mtl.config.flag_fields`): its spelling, value type, default, help text and valid names come from
    the field."""
    from mtl.config import flag_fields, spec_of

    for flag, f, kind in flag_fields():
        spec = spec_of(f)
        options: dict[str, Any] = {"dest": f.name, "default": f.default, "help": spec.help}
        if kind in (int, float):
            options["type"] = kind
        if spec.choices and spec.accepts is None:
            options["choices"] = list(spec.choices)
        else:
            options["metavar"] = flag.removeprefix("--").replace("-", "_").upper()
        parser.add_argument(flag, **options)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mtl", description="multi-task learning: train and inspect methods")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train one configuration, printing per-epoch progress")
    add_config_flags(train)
    train.add_argument("--subset", type=int, default=None, help="use a random subset of this many samples")
    train.add_argument("-m", "--method-arg", action="append", default=[], metavar="KEY=VALUE")
    train.add_argument("-d", "--dataset-arg", action="append", default=[], metavar="KEY=VALUE")
    train.add_argument(
        "--out",
        default=None,
        help="also write the records as JSON lines to this file (missing folders are created; "
        "the records' epoch is 0-based)",
    )
    train.add_argument("--progress", action="store_true", help="show a per-step progress bar")
    train.set_defaults(func=cmd_train)
    sub.add_parser("methods", help="list methods and their keyword arguments").set_defaults(func=cmd_methods)
    sub.add_parser("datasets", help="list datasets and their keyword arguments").set_defaults(
        func=cmd_datasets
    )
    refs = sub.add_parser("references", help="print the published STL rows (all, or one table by name)")
    refs.add_argument("name", nargs="?", default=None, help="a table name (default: all tables)")
    refs.set_defaults(func=cmd_references)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(args.func, args)


if __name__ == "__main__":
    raise SystemExit(main())
