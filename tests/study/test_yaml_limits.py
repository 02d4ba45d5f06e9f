"""A study file's size, nesting, alias expansion and list lengths are capped before it is parsed."""

import time

import pytest

from study.yaml_limits import MAX_BYTES, MAX_DEPTH, MAX_LIST, YAMLLimitError, check_size, check_yaml_limits


def _bomb(levels: int = 9) -> str:
    """The 'billion laughs': each anchor a list of nine aliases of the previous one (9**levels values)."""
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_at_once_with_a_short_message():
    text = _bomb()
    assert len(text) < 1000
    start = time.perf_counter()
    with pytest.raises(YAMLLimitError, match="expands to more than 100,000 values") as info:
        check_yaml_limits(text)
    assert time.perf_counter() - start < 1.0
    assert len(str(info.value)) < 300


def test_nesting_is_capped_without_a_recursion_error():
    with pytest.raises(YAMLLimitError, match=f"nested more than {MAX_DEPTH} levels deep"):
        check_yaml_limits("a: " + "[" * 500 + "]" * 500)
    check_yaml_limits("a: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1))  # within the cap


def test_long_lists_and_large_files_are_refused():
    with pytest.raises(YAMLLimitError, match=f"a list with more than {MAX_LIST:,} items"):
        check_yaml_limits("seeds: [" + ", ".join(str(i) for i in range(MAX_LIST + 1)) + "]\n")
    with pytest.raises(YAMLLimitError, match="at most 1,048,576"):
        check_size(MAX_BYTES + 1)
    with pytest.raises(YAMLLimitError, match="at most 1,048,576"):
        check_yaml_limits("x" * (MAX_BYTES + 1))


def test_every_shipped_study_is_well_within_the_limits():
    from pathlib import Path

    files = sorted(Path(__file__).resolve().parents[2].joinpath("search_spaces").glob("*.yaml"))
    assert files
    for path in files:
        check_yaml_limits(path.read_text())


def test_a_few_aliases_are_fine_and_syntax_errors_are_left_to_the_parser():
    check_yaml_limits("base: &b {lr: 0.1}\nmethods: [{name: ew, space: *b}, {name: si, space: *b}]\n")
    check_yaml_limits("a: [")  # the parser reports it with its own position
