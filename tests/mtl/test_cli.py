import json

from mtl.cli import main


def test_train_prints_one_line_per_epoch(capsys, tmp_path):
    out = tmp_path / "records.jsonl"
    code = main(
        [
            "train",
            "--dataset",
            "synthetic",
            "--method",
            "db_mtl",
            "--seed",
            "0",
            "--epochs",
            "3",
            "-d",
            "n_train=64",
            "-d",
            "n_val=16",
            "-d",
            "n_test=16",
            "-m",
            "beta=0.5",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    epoch_lines = [line for line in lines if line.startswith("epoch")]
    assert len(epoch_lines) == 3 and "val Δp" in epoch_lines[0] and "3/3" in epoch_lines[-1]
    assert lines[-1].startswith("best val Δp")
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1, 2]


def test_bad_method_is_a_clear_error(capsys):
    assert main(["train", "--method", "nope", "--epochs", "1"]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err


def test_methods_listing(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert "max_norm" in out and "alpha_strategy='max'" in out and "db_mtl" in out


def test_every_method_has_one_line_and_its_paper_in_the_listing_and_the_readme(capsys):
    from pathlib import Path

    from mtl.aggregators import AGGREGATORS
    from mtl.balancers import BALANCERS
    from mtl.method_papers import METHOD_PAPERS

    names = set(BALANCERS.names()) | set(AGGREGATORS.names())
    assert names == set(METHOD_PAPERS), names ^ set(METHOD_PAPERS)
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    for name in names:
        what, paper = METHOD_PAPERS[name]
        assert f"  {name:<12} {what} [{paper}]" in out
    assert "weight.<task>=1.0" in out  # static's per-task weights, as they are written
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("| `")]
    missing = [n for n in sorted(names - {"sum"}) if not any(f"`{n}`" in row.split("|")[1] for row in rows)]
    assert not missing, f"methods missing from the README's tables: {missing}"
