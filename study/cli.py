"""``study`` command line.

study run search_spaces/quickstart.yaml [--storage DIR|URI] [--name NAME] [--address auto|HOST:PORT|ray://...]
study resume NAME_OR_PATH [--storage DIR|URI] [--retry-errored] [--address ...]
study status NAME_OR_PATH [--storage DIR|URI]
study ls [--storage DIR|URI]
study compact NAME_OR_PATH [--storage DIR|URI]   # one epoch file per ended trial (idempotent)
study repair NAME_OR_PATH [--storage DIR|URI]    # set aside unreadable files, rebuild lost trial rows
study check FILE...            # validate study files without running anything
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from mtl.errors import run_command

DEFAULT_STORAGE = "results"
ADDRESS_HELP = (
    "join this Ray cluster instead of the file's ray.address: 'auto' (the cluster this machine belongs to, "
    "e.g. in a Slurm job or a KubeRay pod), 'host:port' or 'ray://host:10001'"
)


def _reference_of(study: Any, dataset: str) -> str | None:
    """What ``dataset``'s Δp is measured against in ``study``, in words; from :mod:`mtl.data.references`
    (no dataset is built) where it ships published tables, else the dataset's own note."""
    from mtl.data.references import TABLES, defaults_for

    train = study.train if study is not None else None
    if train is not None and train.reference is not None:
        return "the study's train.reference"
    table = getattr(train, "reference_table", None) if train is not None else None
    if table is None:
        defaults = defaults_for(dataset, getattr(train, "architecture", "hps"))
        table = defaults.delta_p if defaults is not None else None
        if defaults is not None and table is None:
            return "no published STL row (Δp is not computed; set train.reference)"
    if table == "none":
        return "nothing (train.reference_table: none)"
    if table is not None:
        return f"the reference table '{table}': {TABLES[table].source}"
    from mtl.data import DATASETS  # a dataset with no published tables (synthetic): its own note

    return DATASETS.factory(dataset).reference_note if dataset in DATASETS else None


def reference_lines(study: Any, datasets: list[str]) -> list[str]:
    """What each dataset's Δp is measured against, in words (a bare percentage says little)."""
    lines = []
    for name in datasets:
        against = _reference_of(study, name)
        if against is not None:
            lines.append(f"Δp on {name} (%, higher is better) is measured against {against}")
    return lines


def _first_trial_delay(trials: Any, started_at: Any) -> float | None:
    """Seconds from the run's start to the first trial this run started (None when unknown)."""
    import pandas as pd

    if started_at is None or trials.empty or "started_at" not in trials.columns:
        return None
    starts = pd.to_datetime(trials["started_at"], utc=True, errors="coerce").dropna()
    starts = starts[starts >= pd.Timestamp(started_at)]
    return None if starts.empty else float((starts.min() - pd.Timestamp(started_at)).total_seconds())


def _print_report(report, printer=print, study=None) -> int:
    from study.runner import budget_lines, describe_best, load_trials

    trials = load_trials(report.location)
    printer("")
    if report.interrupted:
        printer(f"study '{report.study}' was interrupted after {report.wall_time:.1f}s; continue it with:")
        printer(f"  study resume {report.location}")
    else:
        printer(f"study '{report.study}' finished in {report.wall_time:.1f}s: {len(trials)} trials")
        if not trials.empty:
            counts = ", ".join(f"{n} {s}" for s, n in trials["status"].value_counts().items())
            printer(f"  trials: {counts}")
            inside = float(trials["wall_time"].fillna(0).sum())
            work = float(trials["time_total"].sum())
            printer(
                f"  time inside trials {inside:.1f}s (training + evaluation {work:.1f}s); "
                f"Ray start-up {report.ray_start_time:.1f}s"
            )
            first = _first_trial_delay(trials, getattr(report, "started_at", None))
            if first is not None:
                printer(
                    f"  the first trial started {first:.1f}s after the study did (Ray start-up "
                    f"{report.ray_start_time:.1f}s, then Tune's start, worker processes and trial set-up)"
                )
    printer("Parquet results (pandas.read_parquet / results_store.reader.read_epochs):")
    printer(f"  epochs: {report.epochs_path}")
    printer(f"  trials: {report.trials_path}")
    for line in budget_lines(trials):
        printer(line)
    best = describe_best(trials)
    for line in best or ["no trial produced a finite validation Δp"]:
        printer(line)
    if best:
        for line in reference_lines(study, sorted(trials["dataset"].unique())):
            printer(line)
    if report.interrupted:
        return 130
    if not trials.empty and bool((trials["status"] == "failed").all()):
        printer(f"every trial failed ({len(trials)}); their errors: study status {report.location}")
        return 1  # a study none of whose trials trained is not a success
    return 0


def _with_address(study: Any, address: str | None) -> Any:
    """``study`` joining the Ray cluster at ``address`` (``--address``: e.g. ``auto`` in a Slurm job or a
    KubeRay pod, whatever the file says), validated as the file's ``ray.address`` is."""
    if address is None:
        return study
    from pydantic import ValidationError

    from study.schema import RaySettings, StudyError

    try:
        ray = RaySettings.model_validate({**study.ray.model_dump(), "address": address})
    except ValidationError as exc:
        raise StudyError(
            "--address", [e["msg"].removeprefix("Value error, ") for e in exc.errors()]
        ) from None
    return study.model_copy(update={"ray": ray})


def cmd_run(args: argparse.Namespace) -> int:
    from study.runner import run_study
    from study.schema import load_study

    study = _with_address(load_study(args.file, name=args.name, storage=args.storage), args.address)
    print(
        f"study '{study.name}': {len(study.groups())} (dataset, method) groups, seeds {study.seeds}, "
        f"results in {study.storage}/{study.name}",
        flush=True,
    )
    return _print_report(run_study(study), study=study)


def cmd_resume(args: argparse.Namespace) -> int:
    from study.runner import find_study, run_study

    study, location = find_study(args.study, args.storage)
    study = _with_address(study, args.address)
    print(f"resuming study '{study.name}' at {location}", flush=True)
    return _print_report(run_study(study, resume=True, retry_errored=args.retry_errored), study=study)


def cmd_status(args: argparse.Namespace) -> int:
    import pandas as pd

    from study.runner import (
        budget_lines,
        describe_best,
        find_study,
        load_trials,
        status_table,
        tune_statuses,
    )

    # read-only: the saved study as written (validated then), without building methods (no torch)
    study, location = find_study(args.study, args.storage, check_registry=False)
    trials = load_trials(location)
    print(f"study '{study.name}' at {location}")
    tune = getattr(study, "tune", None)
    samples = tune.num_samples if tune is not None else study.search.samples
    fair = "" if tune is None else ", tune: equal budget" + (", paper default first" if tune.defaults else "")
    print(
        f"  {len(study.groups())} groups x seeds {study.seeds}; search {study.search.algorithm} "
        f"({samples} samples/group{fair}), "
        f"scheduler {study.scheduler.type}, {study.train.epochs} epochs"
    )
    from study.repair import health

    for line in health(location):  # rows lost or orphaned: said, with what to do
        print(f"  warning: {line}")
    from study.heartbeat import driver_warning

    running = int((trials["status"] == "running").sum()) if not trials.empty else 0
    detached = driver_warning(location, running)
    if detached is not None:
        print(f"  warning: {detached}")
    if trials.empty:
        print("  no trial has written results yet")
    else:
        with pd.option_context("display.width", 160, "display.max_columns", 20):
            print(_rounded(status_table(trials)).to_string())
        for line in budget_lines(trials):
            print(line)
    print("Ray Tune state:")
    for label, counts in tune_statuses(study).items():
        text = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) if counts else "not started"
        print(f"  {label}: {text}")
    failed = trials[trials["status"] == "failed"] if not trials.empty else trials
    for _, row in failed.iterrows():
        print(f"  failed {row['dataset']}/{row['method']} {row['trial_id']}: {row['error']}")
    for line in attempt_lines(trials):
        print(line)
    best = describe_best(trials)
    for line in best:
        print(line)
    if best:
        for line in reference_lines(study, sorted(trials["dataset"].unique())):
            print(line)
    return 0


def attempt_lines(trials: Any) -> list[str]:
    """Every earlier attempt of every retried trial: its node, start, end, epochs and why it ended."""
    from results_store.writer import trial_attempts

    if trials.empty or "attempts" not in trials.columns:
        return []
    lines = []
    for _, row in trials.iterrows():
        attempts = trial_attempts(row)
        if not attempts:
            continue
        lines.append(
            f"  {row['dataset']}/{row['method']} {row['trial_id']}: {len(attempts)} earlier attempt(s), now "
            f"{row['status']} on node {str(row.get('node_id') or '?')[:12]}"
        )
        for k, a in enumerate(attempts, start=1):
            lines.append(
                f"    attempt {k}: node {str(a.get('node_id') or '?')[:12]} ({a.get('host') or '?'}), "
                f"{a.get('started_at')} → {a.get('ended_at')}, {a.get('epochs')} epoch(s): {a.get('reason')}"
            )
    return lines


def _percent(value: Any) -> str:
    """A Δp as printed: ``-45.37%``; blank when missing or not finite."""
    return f"{value:+.2f}%" if isinstance(value, (int, float)) and math.isfinite(value) else ""


def _rounded(table: Any) -> Any:
    """``table`` with its Δp column(s) as :func:`_percent` text."""
    table = table.copy()
    for column in table.columns:
        if "Δp" in str(column):
            table[column] = [_percent(v) for v in table[column]]
    return table


def format_study_list(rows: list[dict[str, Any]]) -> str:
    """The ``study ls`` table: trial counts as integers (0 where a study has none of a status), best
    validation Δp rounded to 0.01 %, the last update as UTC to the second; a missing value is left blank."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    unreadable = frame["error"].notna() if "error" in frame else pd.Series(False, index=frame.index)
    text_columns = {"study", "error", "best val Δp", "updated"}
    for column in frame.columns:
        if column not in text_columns:  # trial counts (the statuses present vary between studies)
            counts = frame[column].fillna(0).astype(int).astype(str)
            frame[column] = counts.where(~unreadable, "")
    frame = _rounded(frame)
    if "updated" in frame:
        stamps = pd.to_datetime(frame["updated"], utc=True, errors="coerce")
        frame["updated"] = [t.strftime("%Y-%m-%d %H:%M:%S UTC") if not pd.isna(t) else "" for t in stamps]
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        return frame.fillna("").to_string(index=False)


def cmd_ls(args: argparse.Namespace) -> int:
    from study.runner import list_studies

    rows = list_studies(args.storage)
    if not rows:
        print(f"no studies under {args.storage}")
        return 0
    print(format_study_list(rows))
    return 0


def cmd_compact(args: argparse.Namespace) -> int:
    from results_store.compaction import compact_study
    from results_store.location import study_folder

    try:
        location = study_folder(args.study, args.storage)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(compact_study(location, printer=print).summary())
    return 0


def cmd_repair(args: argparse.Namespace) -> int:
    from study.repair import health, repair_study
    from study.runner import find_study

    study, location = find_study(args.study, args.storage, check_registry=False)
    for line in repair_study(location, max_epochs=study.train.epochs).lines():
        print(line)
    left = health(location)
    for line in left:
        print(f"still: {line}")
    print("the results read again; `study resume` continues the study" if not left else "")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from study.schema import StudyError, load_study

    failed = 0
    for path in args.files:
        try:
            study = load_study(path)
        except StudyError as exc:
            failed += 1
            print(f"error: {exc}", file=sys.stderr)
            continue
        print(f"{path}: ok ({len(study.groups())} groups, seeds {study.seeds}, {study.search.algorithm})")
    return 2 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="study", description="distributed hyperparameter studies of MTL methods"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="validate a study YAML file and run it")
    run.add_argument("file")
    run.add_argument("--storage", default=None, help="override the file's storage (folder or pyarrow URI)")
    run.add_argument("--name", default=None, help="override the study name (default: the file's)")
    run.add_argument("--address", default=None, help=ADDRESS_HELP)
    run.set_defaults(func=cmd_run)
    for name, func, help_text in (
        ("resume", cmd_resume, "continue an interrupted study where it stopped"),
        ("status", cmd_status, "summarise a study's trials from its Parquet results and Tune state"),
        ("compact", cmd_compact, "fold each ended trial's epoch rows into one file (skips running trials)"),
        ("repair", cmd_repair, "set aside unreadable result files, rebuild lost trial rows from epoch rows"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("study", help="the study's name (under --storage) or the path/URI of its folder")
        p.add_argument(
            "--storage", default=DEFAULT_STORAGE, help=f"where named studies live (default {DEFAULT_STORAGE})"
        )
        if name == "resume":
            p.add_argument(
                "--retry-errored", action="store_true", help="also retry trials that failed for good"
            )
            p.add_argument("--address", default=None, help=ADDRESS_HELP)
        p.set_defaults(func=func)
    ls = sub.add_parser("ls", help="list the studies under a storage location")
    ls.add_argument("--storage", default=DEFAULT_STORAGE)
    ls.set_defaults(func=cmd_ls)
    check = sub.add_parser("check", help="validate study files without running them")
    check.add_argument("files", nargs="+")
    check.set_defaults(func=cmd_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(args.func, args)


if __name__ == "__main__":
    raise SystemExit(main())
