"""The cluster launch recipes of the README: the Slurm batch script runs the commands it should, in order,
with arguments the real CLIs accept; the KubeRay RayJob manifest is well formed and its entrypoint is a
valid `study run` of a shipped, valid study."""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SBATCH = ROOT / "deploy" / "slurm" / "study.sbatch"
RAYJOB = ROOT / "deploy" / "kuberay" / "rayjob.yaml"

FAKE_SRUN = """#!/usr/bin/env bash
# srun [options] command...: log the node and the command, then run the command (a fake below)
node=""
while [ $# -gt 0 ]; do
  case "$1" in
    -w) node="$2"; shift 2 ;;
    --*) shift ;;
    *) break ;;
  esac
done
echo "srun[$node] $*" >> "$CALLS"
exec "$@"
"""
FAKES = {
    "srun": FAKE_SRUN,
    "scontrol": '#!/usr/bin/env bash\necho "scontrol $*" >> "$CALLS"\nprintf "gpu-a\\ngpu-b\\ngpu-c\\n"\n',
    "hostname": '#!/usr/bin/env bash\necho "10.0.0.7 fe80::1"\n',
    "ray": '#!/usr/bin/env bash\necho "ray $*" >> "$CALLS"\n',
    "study": '#!/usr/bin/env bash\necho "study $*" >> "$CALLS"\n',
}


def _fake_path(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in FAKES.items():
        path = bin_dir / name
        path.write_text(body)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return bin_dir


def test_the_sbatch_script_is_valid_bash_with_slurm_directives():
    subprocess.run(["bash", "-n", str(SBATCH)], check=True)
    directives = [line for line in SBATCH.read_text().splitlines() if line.startswith("#SBATCH")]
    keys = {line.split()[1].split("=")[0] for line in directives}
    assert {"--nodes", "--ntasks-per-node", "--cpus-per-task", "--gpus-per-task", "--time"} <= keys


def test_the_sbatch_script_starts_a_head_then_the_workers_then_the_study(tmp_path):
    calls = tmp_path / "calls.log"
    env = {
        **os.environ,
        "PATH": f"{_fake_path(tmp_path)}:{os.environ['PATH']}",
        "CALLS": str(calls),
        "SLURM_JOB_NODELIST": "gpu-[a-c]",
        "SLURM_CPUS_PER_TASK": "16",
        "SLURM_GPUS_PER_TASK": "4",
    }
    study = "search_spaces/quickstart.yaml"
    subprocess.run(["bash", str(SBATCH), study, "/shared/results"], check=True, env=env, cwd=ROOT, timeout=60)
    lines = calls.read_text().splitlines()
    heads = [x for x in lines if x.startswith("ray start --head")]
    workers = [x for x in lines if x.startswith("ray start --address=10.0.0.7:6379")]
    assert len(heads) == 1 and "--num-cpus=16" in heads[0] and "--num-gpus=4" in heads[0]
    assert "srun[gpu-a] ray start --head" in "\n".join(lines)
    assert {x for x in lines if x.startswith("srun[gpu-b]") or x.startswith("srun[gpu-c]")}
    assert len(workers) == 2
    runs = [x for x in lines if x.startswith("study run")]
    assert runs == [f"study run {study} --storage /shared/results --address auto"]
    # the order: the study is checked, then run (the foreground); the head and the workers run in the
    # background (`ray start --block &`), so their log lines may interleave: the script's order says it
    assert lines.index(f"study check {study}") < lines.index(runs[0])
    text = SBATCH.read_text().split("set -euo pipefail", 1)[1]  # the commands, not the header comment
    steps = ["ray start --head", "ray status --address", "ray start --address=", "study check", "study run"]
    assert [text.index(step) for step in steps] == sorted(text.index(step) for step in steps)
    # and the real CLI takes exactly those arguments
    from study.cli import build_parser

    args = build_parser().parse_args(shlex.split(runs[0])[1:])
    assert (args.file, args.storage, args.address) == (study, "/shared/results", "auto")


def test_the_sbatch_script_refuses_to_run_without_a_study_file(tmp_path):
    env = {**os.environ, "PATH": f"{_fake_path(tmp_path)}:{os.environ['PATH']}", "CALLS": str(tmp_path / "c")}
    out = subprocess.run(["bash", str(SBATCH)], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "usage: sbatch deploy/slurm/study.sbatch STUDY.yaml" in out.stderr


def test_the_rayjob_manifest_is_well_formed_and_runs_a_valid_study():
    job = yaml.safe_load(RAYJOB.read_text())
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    spec = job["spec"]
    cluster = spec["rayClusterSpec"]
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    workers = cluster["workerGroupSpecs"]
    assert head["image"] and workers and all(w["replicas"] >= 1 for w in workers)
    for group in workers:
        container = group["template"]["spec"]["containers"][0]
        assert int(container["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    argv = shlex.split(spec["entrypoint"])
    assert argv[:2] == ["study", "run"]
    from study.cli import build_parser

    args = build_parser().parse_args(argv[1:])
    assert args.address == "auto"
    study_file = ROOT / args.file
    assert study_file.is_file()
    from study.schema import load_study

    assert load_study(study_file, check_registry=False).name


@pytest.mark.parametrize("path", [SBATCH, RAYJOB])
def test_the_recipes_are_shipped(path):
    assert path.is_file()
