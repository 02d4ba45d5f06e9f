"""The ``analysis`` command: tables, comparisons, figures and reports of a study from its Parquet results.

::

    analysis leaderboard PATH [--format text|md|latex|html] [--dataset D]   # DB-MTL Tables 1-4
    analysis ablation PATH [--format ...]                                   # DB-MTL Table 5
    analysis delta-m PATH [--format ...] [--dataset D]                      # IGB Δm + relative time T
    analysis compare PATH --a M1 --b M2 [--dataset D] [--metric test_delta_p] [--n-boot N] [--seed S]
    analysis plots PATH --out DIR                                           # DB-MTL Figs. 5-10, ASHA, Pareto
    analysis report PATH [--out FILE] [--format html|md] [--plots-dir DIR]
    analysis fair PATH [--format ...] [--dataset D] [--bootstrap N] [--seed S]   # defaults vs tuned

Every command takes ``--reference paper|study``: Δp/Δm against the published STL rows (default) or against
the study's own ``stl`` trials (:mod:`analysis.reference`); every table says which. Every command takes
``--selection best_val|last_k`` (``--last-k K``, default 10): test values at each trial's best validation
epoch, or the mean of its last K epochs (:mod:`results_store.selection`); every table's caption names it.

PATH is the study folder ``<storage>/<study>`` (local or a pyarrow URI). Exit status 2 on a usage error
(unknown method, no study at PATH, too few paired seeds).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence

from analysis.load import Study, load_study
from analysis.reference import CHOICES, PAPER
from analysis.render import RENDERERS, render
from analysis.table_model import Table
from analysis.tables import ablation_table, delta_m_table, leaderboard
from results_store.selection import BEST_VAL, DEFAULT_K, Protocol, protocol
from results_store.selection import CHOICES as SELECTIONS


def _datasets(study: Study, dataset: str | None) -> list[str]:
    if dataset is None:
        return study.datasets
    if dataset not in study.datasets:
        raise ValueError(f"dataset '{dataset}' is not in the study; datasets: {', '.join(study.datasets)}")
    return [dataset]


def _print_tables(tables: list[Table], fmt: str) -> None:
    print("\n".join(render(t, fmt) for t in tables), end="")


def _protocol(args: argparse.Namespace) -> Protocol:
    return protocol(args.selection, args.last_k)


def _load(args: argparse.Namespace) -> Study:
    return load_study(args.path, args.reference, _protocol(args))


def cmd_leaderboard(args: argparse.Namespace) -> int:
    study = _load(args)
    _print_tables([leaderboard(study, d) for d in _datasets(study, args.dataset)], args.format)
    return 0


def cmd_ablation(args: argparse.Namespace) -> int:
    study = _load(args)
    _print_tables([ablation_table(study, _datasets(study, args.dataset))], args.format)
    return 0


def cmd_delta_m(args: argparse.Namespace) -> int:
    study = _load(args)
    _print_tables([delta_m_table(study, d) for d in _datasets(study, args.dataset)], args.format)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from analysis.stats import compare

    study = _load(args)
    result = compare(
        study,
        args.a,
        args.b,
        dataset=args.dataset,
        metric=args.metric,
        n_boot=args.n_boot,
        confidence=args.confidence,
        seed=args.seed,
    )
    print(result.summary())
    dataset = args.dataset or (study.datasets[0] if len(study.datasets) == 1 else None)
    if dataset is not None and args.metric.endswith(("delta_p", "delta_m")):
        print(f"({study.reference_label(dataset)})")
    print(f"({study.protocol.label()})")
    return 0


def cmd_plots(args: argparse.Namespace) -> int:
    from analysis.plots import all_plots

    figures = all_plots(_load(args), args.out)
    for fig in figures:
        for path in fig.paths:
            print(path)
        if fig.note:
            print(f"# {fig.name}: {fig.note}", file=sys.stderr)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from analysis.report import write_report

    path = write_report(
        args.path,
        args.out,
        args.format,
        baseline=args.baseline,
        n_boot=args.n_boot,
        reference=args.reference,
        plots_dir=args.plots_dir,
        command=args.command_line,
        focus=args.focus,
        selection=_protocol(args),
    )
    print(path)
    return 0


def cmd_fair(args: argparse.Namespace) -> int:
    from analysis.fair import fair_comparison, fair_table

    study = _load(args)
    if study.trials.empty:
        raise ValueError(f"no trials/ rows under '{args.path}': nothing to compare")
    tables = [
        fair_table(fair_comparison(study, d, args.bootstrap, args.seed))
        for d in _datasets(study, args.dataset)
    ]
    _print_tables(tables, args.format)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="analysis",
        description="Tables, comparisons, figures and reports of an mtl-study study (Parquet).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    formats = list(RENDERERS)

    def add(name: str, func, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("path", help="the study folder <storage>/<study> (local path or URI)")
        p.add_argument(
            "--reference",
            choices=CHOICES,
            default=PAPER,
            help="what Δp/Δm are measured against: the published STL rows the trials ran with (paper, "
            "the default) or the study's own stl trials (study; analysis.reference)",
        )
        p.add_argument(
            "--selection",
            choices=SELECTIONS,
            default=BEST_VAL,
            help="which epochs a trial's test values come from: its best validation epoch (best_val, the "
            "default) or the mean of its last K epochs (last_k, nash-mtl's NYUv2 protocol; configurations "
            "are then chosen on the same epochs' mean validation Δp)",
        )
        p.add_argument(
            "--last-k",
            type=int,
            default=DEFAULT_K,
            metavar="K",
            help=f"epochs averaged by --selection last_k (default {DEFAULT_K}; fewer when a trial ran fewer)",
        )
        p.set_defaults(func=func)
        return p

    p = add("leaderboard", cmd_leaderboard, "per-dataset leaderboard (DB-MTL Tables 1-4)")
    p.add_argument("--format", choices=formats, default="text")
    p.add_argument("--dataset")
    p = add("ablation", cmd_ablation, "log / max-norm ablation (DB-MTL Table 5)")
    p.add_argument("--format", choices=formats, default="text")
    p.add_argument("--dataset")
    p = add("delta-m", cmd_delta_m, "Δm and relative training time T versus EW (IGB)")
    p.add_argument("--format", choices=formats, default="text")
    p.add_argument("--dataset")
    p = add("compare", cmd_compare, "paired bootstrap comparison of two methods across seeds")
    p.add_argument("--a", required=True, help="method A (difference = A − B)")
    p.add_argument("--b", required=True, help="method B")
    p.add_argument("--dataset")
    p.add_argument("--metric", default="test_delta_p", help="a trials/ column, e.g. test/t0/mae")
    p.add_argument("--n-boot", type=int, default=10_000)
    p.add_argument("--confidence", type=float, default=0.95)
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap generator")
    p = add("plots", cmd_plots, "all figures as PNG and PDF (DB-MTL Figs. 5-10, ASHA view, cost Pareto)")
    p.add_argument("--out", required=True, help="output folder")
    p = add("report", cmd_report, "one self-contained HTML or Markdown report")
    p.add_argument("--out", help="output file (default <study>_report.<format>)")
    p.add_argument("--format", choices=["html", "md"])
    p.add_argument("--baseline", default="ew", help="method the paired comparisons are against")
    p.add_argument("--n-boot", type=int, default=10_000)
    p.add_argument(
        "--focus",
        metavar="METHOD",
        help="compare METHOD against every other method (METHOD − other) instead of all against --baseline",
    )
    p.add_argument(
        "--plots-dir",
        help="keep the figures here (PNG and PDF); a Markdown report then links them instead of embedding",
    )
    p = add(
        "fair",
        cmd_fair,
        "paper defaults vs tuned per method: Δp/Δm with 95%% intervals, ranks, Kendall τ, P(beats tuned "
        "EW/static) by paired bootstrap, P(rank 1), device-hours, verdicts",
    )
    p.add_argument("--format", choices=formats, default="text")
    p.add_argument("--dataset")
    p.add_argument("--bootstrap", type=int, default=10_000, metavar="N", help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap generator")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``analysis`` console script."""
    args = build_parser().parse_args(argv)
    args.command_line = shlex.join(["analysis", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args))
    except (ValueError, KeyError, FileNotFoundError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"analysis {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
