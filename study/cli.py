"""``study`` command line.

study run search_spaces/quickstart.yaml [--storage DIR|URI] [--name NAME]
study resume NAME_OR_PATH [--storage DIR|URI] [--retry-errored]
study status NAME_OR_PATH [--storage DIR|URI]
study ls [--storage DIR|URI]
study check FILE...            # validate study files without running anything
"""

from __future__ import annotations

import argparse
import sys

from mtl.errors import MTLError

DEFAULT_STORAGE = "results"


def _print_report(report, printer=print) -> int:
    from study.runner import describe_best, load_trials

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
    printer("Parquet results (pandas.read_parquet / study.results.read_epochs):")
    printer(f"  epochs: {report.epochs_path}")
    printer(f"  trials: {report.trials_path}")
    best = describe_best(trials)
    for line in best or ["no trial produced a finite validation Δp"]:
        printer(line)
    return 130 if report.interrupted else 0


def cmd_run(args: argparse.Namespace) -> int:
    from study.runner import run_study
    from study.schema import load_study

    study = load_study(args.file, name=args.name, storage=args.storage)
    print(
        f"study '{study.name}': {len(study.groups())} (dataset, method) groups, seeds {study.seeds}, "
        f"results in {study.storage}/{study.name}",
        flush=True,
    )
    return _print_report(run_study(study))


def cmd_resume(args: argparse.Namespace) -> int:
    from study.runner import find_study, run_study

    study, location = find_study(args.study, args.storage)
    print(f"resuming study '{study.name}' at {location}", flush=True)
    return _print_report(run_study(study, resume=True, retry_errored=args.retry_errored))


def cmd_status(args: argparse.Namespace) -> int:
    import pandas as pd

    from study.runner import describe_best, find_study, load_trials, status_table, tune_statuses

    study, location = find_study(args.study, args.storage)
    trials = load_trials(location)
    print(f"study '{study.name}' at {location}")
    print(
        f"  {len(study.groups())} groups x seeds {study.seeds}; search {study.search.algorithm} "
        f"({study.search.samples} samples/group), scheduler {study.scheduler.type}, "
        f"{study.train.epochs} epochs"
    )
    if trials.empty:
        print("  no trial has written results yet")
    else:
        with pd.option_context("display.width", 160, "display.max_columns", 20):
            print(status_table(trials).to_string())
    print("Ray Tune state:")
    for label, counts in tune_statuses(study).items():
        text = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) if counts else "not started"
        print(f"  {label}: {text}")
    failed = trials[trials["status"] == "failed"] if not trials.empty else trials
    for _, row in failed.iterrows():
        print(f"  failed {row['dataset']}/{row['method']} {row['trial_id']}: {row['error']}")
    for line in describe_best(trials):
        print(line)
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    import pandas as pd

    from study.runner import list_studies

    rows = list_studies(args.storage)
    if not rows:
        print(f"no studies under {args.storage}")
        return 0
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(pd.DataFrame(rows).fillna("").to_string(index=False))
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
    run.set_defaults(func=cmd_run)
    for name, func, help_text in (
        ("resume", cmd_resume, "continue an interrupted study where it stopped"),
        ("status", cmd_status, "summarise a study's trials from its Parquet results and Tune state"),
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
    try:
        return args.func(args)
    except MTLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
