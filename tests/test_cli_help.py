"""Every command line's ``--help``, top level and per subcommand, prints (argparse formats help strings
with ``%``: a literal "95%" in a help text once crashed ``analysis --help``)."""

from __future__ import annotations

import argparse

import pytest

from analysis.cli import build_parser as analysis_parser
from mtl.cli import build_parser as mtl_parser
from study.cli import build_parser as study_parser


def _subcommands(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return [p for s in subs for p in s.choices.values()]


@pytest.mark.parametrize(
    "build", [analysis_parser, mtl_parser, study_parser], ids=["analysis", "mtl", "study"]
)
def test_every_help_text_formats(build):
    parser = build()
    for p in [parser, *_subcommands(parser)]:
        text = p.format_help()
        assert p.prog in text
