"""`mtl train`: where its records go, what its progress lines say (issue 13)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from mtl.cli import main

TINY = ["-d", "n_train=64", "-d", "n_val=16", "-d", "n_test=16"]


def test_out_into_a_missing_folder_creates_it(capsys, tmp_path):
    out = tmp_path / "runs" / "today" / "records.jsonl"
    assert main(["train", "--method", "db_mtl", "--epochs", "2", *TINY, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1]  # stored 0-based
    # printed 1-based: the progress lines and the best epoch agree with the stored record
    assert re.findall(r"^epoch +(\d+)/2", printed, re.M) == ["1", "2"]
    best = max(records, key=lambda r: r["val_delta_p"])
    assert f"at epoch {best['epoch'] + 1} " in printed


def test_out_that_cannot_be_written_fails_before_the_dataset_is_built(capsys, tmp_path):
    (tmp_path / "file").write_text("")
    assert main(["train", "--epochs", "1", *TINY, "--out", str(tmp_path / "file" / "r.jsonl")]) == 2
    err = capsys.readouterr().err
    assert f"'{tmp_path / 'file'}' is a file, not a folder" in err
    assert "building dataset" not in err


def test_progress_names_the_aggregator_that_balances(capsys):
    """DB-MTL's loss weights are all 1: the balancing is its max-norm aggregator, which the line names."""
    assert main(["train", "--method", "db_mtl", "--epochs", "1", *TINY]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("epoch"))
    assert "w[1 1 1] agg=max_norm" in line
    assert main(["train", "--method", "ew", "--epochs", "1", *TINY]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("epoch"))
    assert "w[1 1 1]" in line and "agg=" not in line


def test_building_the_mpnn_prints_no_torch_jit_deprecation():
    """PyG scripts helpers with torch.jit.script at import, which torch deprecates: every QM9 run printed
    it."""
    code = (
        "from mtl.models.mpnn import MPNNEncoder\n"
        "MPNNEncoder(11, 5, dim=8, steps=1, set2set_steps=1, conv='pyg')\n"
        "import torch_geometric.data\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "default", "-c", code], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "torch.jit.script" not in done.stderr, done.stderr
