"""Study files: validation errors name the field and the allowed values; every shipped study is valid."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from study.cli import main
from study.cluster import ClusterError, check_resources
from study.schema import Resources, StudyError, load_study, parse_study, validate_study
from study.space import apply_hparams, destination

from .conftest import study_dict

SHIPPED = sorted((Path(__file__).resolve().parents[2] / "search_spaces").glob("*.yaml"))
REQUIRED = {
    "quickstart",
    "synthetic_quickstart",
    "repro_qm9_cpu",
    "db_mtl_beta_alpha",
    "igbv2_sac",
    "paper_qm9",
    "nyuv2",
    "cityscapes",
    "office31",
    "office_home",
}


def errors_of(text: str) -> str:
    with pytest.raises(StudyError) as info:
        parse_study(text, default_name="x")
    return str(info.value)


GOOD = """
datasets: [synthetic]
methods:
  - ew
  - name: db_mtl
    space:
      beta: {choice: [0.1, 0.5, 0.9]}
      beta_sigma: {choice: [0, 0.5]}
      alpha_strategy: {choice: [max, mean]}
seeds: [0, 1]
space: {lr: {loguniform: [1.0e-4, 1.0e-2]}}
train: {epochs: 4}
"""


def test_good_study_groups_and_columns():
    study = parse_study(GOOD, default_name="demo")
    assert study.name == "demo" and study.storage == "results" and study.ray.address is None
    assert [g.label for g in study.groups()] == ["synthetic/ew", "synthetic/db_mtl"]
    assert study.groups()[0].space.keys() == {"lr"}
    assert study.hp_types() == {
        "lr": "float",
        "beta": "float",
        "beta_sigma": "float",
        "alpha_strategy": "str",
    }
    assert study.scheduler.metric == "val_delta_p" and study.scheduler.mode == "max"
    assert study.max_t == 4


BAD = [
    # (YAML, substrings the message must contain)
    (
        "datasets: [synthetic]\nmethods: [ew]\ntrain: {epochs: 2}\nsearch: {algorithm: tpe}\n",
        ["search.algorithm", "'optuna', 'random' or 'grid'", "'tpe'"],
    ),
    (
        "datasets: [synthetic]\nmethods: [db_mlt]\ntrain: {epochs: 2}\n",
        ["methods[0].name", "unknown method 'db_mlt'", "db_mtl"],
    ),
    (
        "datasets: [synthetc]\nmethods: [ew]\ntrain: {epochs: 2}\n",
        ["datasets[0]", "did you mean 'synthetic'", "valid: "],
    ),
    (
        "datasets: [synthetic]\nmethods: [{name: db_mtl, space: {beta: {choise: [1]}}}]\n"
        "train: {epochs: 2}\n",
        [
            "methods[0].space.beta.choise",
            "did you mean 'choice'",
            "allowed: choice, grid, uniform, loguniform, int",
        ],
    ),
    (
        "datasets: [synthetic]\nmethods: [{name: db_mtl, space: {betta: {choice: [0.5]}}}]\n"
        "train: {epochs: 2}\n",
        ["methods[0].space.betta", "valid: alpha_constant, alpha_strategy, beta, beta_sigma"],
    ),
    (
        "datasets: [synthetic]\nmethods: [{name: db_mtl, space: {alpha_strategy: {choice: [max, foo]}}}]\n"
        "train: {epochs: 2}\n",
        ["methods[0].space.alpha_strategy", "'foo'", "max, min, mean, median, constant"],
    ),
    (
        "datasets: [synthetic]\nmethods: [ew]\ntrain: {epochs: 2, optimizer: adamx}\n",
        ["train", "optimizer 'adamx'", "adam, adamw, sgd"],
    ),
    (
        "datasets: [synthetic]\nmethods: [ew]\ntrain: {epochs: two, lrr: 1}\nschedular: {}\n",
        [
            "train.epochs",
            "valid integer",
            "train.lrr",
            "did you mean 'lr'",
            "schedular",
            "allowed: name, description",
        ],
    ),
    (
        "datasets: [synthetic]\nmethods: [ew]\ntrain: {epochs: 2}\n"
        "space: {lr: {uniform: [1, 0]}, beta: 0.5}\n",
        ["space.lr: uniform needs finite low < high", "space.beta: a search-space entry must be a mapping"],
    ),
    (
        "datasets: [synthetic]\nmethods: [ew]\ntrain: {epochs: 2}\n"
        "space: {lr: {grid: [0.1, 0.2]}, weight_decay: {uniform: [0.0, 0.1]}}\n",
        ["space.lr", "'grid' mixed with sampled parameters under search.algorithm optuna"],
    ),
    (
        "datasets: [synthetic]\nmethods: [ew]\ntrain: {epochs: 2}\nsearch: {algorithm: grid}\n"
        "space: {lr: {uniform: [0.1, 0.2]}}\n",
        ["space.lr", "grid needs choice/grid values"],
    ),
    (
        "datasets: [synthetic]\nmethods: [ew]\ntrain: {epochs: 2}\nscheduler: {type: asha, max_t: 5}\n",
        ["scheduler.max_t: 5 exceeds train.epochs (2)"],
    ),
    (
        "datasets: [synthetic]\nmethods: [ew]\ntrain: {epochs: 2}\nscheduler: {type: hyperband}\n",
        ["scheduler.type", "'asha' or 'none'"],
    ),
    (
        "datasets: [synthetic]\nmethods: [ew]\ntrain: {epochs: 2}\nscheduler: {metric: val_loss}\n",
        ["scheduler.metric", "'val_delta_p'"],
    ),
    (
        "datasets: [synthetic]\nmethods: [ew]\ntrain: {epochs: 2, device: cuda}\n",
        ["train.device", "gpus_per_trial > 0"],
    ),
    (
        "datasets: [synthetic]\nmethods: [ew]\ntrain: {epochs: 2}\nresources: {gpus_per_trial: 1.5}\n",
        ["resources", "whole number"],
    ),
    (
        "datasets: [synthetic]\nmethods: [ew]\ntrain: {epochs: 2}\nray: {address: 'http://x'}\n",
        ["ray", "'auto', 'ray://host:port'"],
    ),
    (
        "datasets: [synthetic]\nmethods: [ew, ew]\ntrain: {epochs: 2}\nseeds: [1, 1]\n",
        ["methods: ['ew'] listed more than once", "seeds: values must be distinct"],
    ),
    (
        "datasets: [synthetic]\nmethods: [ew]\ntrain: {epochs: 2}\nspace: {seed: {choice: [1, 2]}}\n",
        ["space.seed", "cannot be searched"],
    ),
    ("name: 'bad name!'\ndatasets: [synthetic]\nmethods: [ew]\ntrain: {epochs: 2}\n", ["name", "pattern"]),
    ("datasets: [synthetic]\nmethods: [ew]\n", ["train: required field is missing"]),
    ("datasets: [synthetic]\nmethods: [ew]\n train: {epochs: 2}\n", ["not valid YAML", "line 3"]),
    ("- just a list\n", ["must be a mapping"]),
]


@pytest.mark.parametrize(("text", "expected"), BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_inputs_name_the_field_and_the_allowed_values(text, expected):
    message = errors_of(text)
    for part in expected:
        assert part in message, f"{part!r} not in:\n{message}"


def test_registry_checks_can_be_deferred():
    text = "datasets: [not_yet_registered]\nmethods: [not_a_method]\ntrain: {epochs: 2}\n"
    assert parse_study(text, default_name="x", check_registry=False).datasets[0].name == "not_yet_registered"
    assert "unknown dataset" in errors_of(text)


def test_shipped_studies_cover_the_issue():
    assert {p.stem for p in SHIPPED} >= REQUIRED


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_study_is_valid(path):
    study = load_study(path, check_registry=False)  # structure, search spaces, cross-field rules
    assert study.name == path.stem
    try:
        load_study(path)  # dataset and method names, keyword arguments and values via the mtl registries
    except StudyError as exc:
        unregistered = [p for p in exc.problems if "unknown dataset" in p or "unknown method" in p]
        if unregistered and len(unregistered) == len(exc.problems):
            pytest.skip(
                f"{path.name} names parts of mtl that are not registered yet: {'; '.join(unregistered)}"
            )
        raise


def test_quickstart_is_real_qm9_searched_by_optuna_and_asha_on_a_local_cpu():
    """Issue 14 item 1: the README's first command trains on real data, not synthetic."""
    root = SHIPPED[0].parent
    study = load_study(root / "quickstart.yaml")
    assert [d.name for d in study.datasets] == ["qm9"] and study.datasets[0].kwargs["subset"] <= 2000
    assert [m.name for m in study.methods] == ["ew", "si", "db_mtl"]
    assert set(study.methods[2].space) == {"beta", "beta_sigma", "alpha_strategy"}
    assert (study.search.algorithm, study.scheduler.type) == ("optuna", "asha")
    assert study.ray.address is None and study.resources.gpus_per_trial == 0 and study.train.device == "cpu"
    readme = (root.parent / "README.md").read_text()
    assert readme.index("study run search_spaces/quickstart.yaml") < readme.index("synthetic_quickstart")
    synthetic = load_study(root / "synthetic_quickstart.yaml")
    assert [d.name for d in synthetic.datasets] == ["synthetic"]


def test_repro_study_has_the_four_variants_and_stl_per_task_and_seed():
    """Issue 14 item 3: DB-MTL Table 5's variants plus one stl trial per task and seed, exact gradients."""
    from mtl.data.qm9 import TASKS
    from study.tuner import make_searcher

    study = load_study(SHIPPED[0].parent / "repro_qm9_cpu.yaml")
    assert [m.name for m in study.methods] == ["ew", "si", "max_norm", "db_mtl", "stl"]
    assert study.train.grad_mode == "exact" and len(study.seeds) == 3 and study.scheduler.type == "none"
    totals = {name: g.total for name, g in make_searcher(study).groups.items()}
    assert totals["qm9__stl"] == len(TASKS) * 3 and totals["qm9__db_mtl"] == 3


def test_space_conversion_and_routing():
    study = parse_study(GOOD, default_name="x")
    space = study.groups()[1].space
    assert space["lr"].dist.to_optuna().log is True
    assert destination("lr") == ("lr", None)
    assert destination("model.hidden") == ("model_kwargs", "hidden")
    assert destination("beta") == ("method_kwargs", "beta")
    merged = apply_hparams({"lr": None, "method_kwargs": {"alpha_strategy": "max"}}, {"lr": 0.1, "beta": 0.5})
    assert merged == {"lr": 0.1, "method_kwargs": {"alpha_strategy": "max", "beta": 0.5}}


def test_gpu_request_on_a_gpu_less_cluster_fails_fast():
    with pytest.raises(ClusterError, match="has no GPUs"):
        check_resources([{"CPU": 2.0}], Resources(gpus_per_trial=0.5))
    with pytest.raises(ClusterError, match="no node of"):
        check_resources([{"CPU": 2.0}, {"CPU": 2.0}], Resources(cpus_per_trial=4))
    check_resources(
        [{"CPU": 1.0}, {"CPU": 4.0, "GPU": 1.0}], Resources(cpus_per_trial=2, gpus_per_trial=0.25)
    )


def test_cli_reports_bad_files_with_exit_code_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("datasets: [synthetic]\nmethods: [ew]\ntrain: {epochs: 2}\nsearch: {algorithm: tpe}\n")
    assert main(["run", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "search.algorithm" in err and "'optuna', 'random' or 'grid'" in err
    assert main(["check", str(bad)]) == 2
    assert main(["status", "nothing-here", "--storage", str(tmp_path)]) == 2
    assert "no study 'nothing-here'" in capsys.readouterr().err


def test_validate_study_overrides(tmp_path):
    data = study_dict(tmp_path, "demo")
    study = validate_study(data, overrides={"name": "other", "storage": "s3://bucket/prefix"})
    assert study.name == "other" and study.storage == "s3://bucket/prefix"
    assert yaml.safe_load(study.to_yaml())["name"] == "other"


# -- issue 13: every bad input answered at validation, before Ray starts ---------------------------------
MINIMAL = "datasets: [synthetic]\nmethods: [ew]\ntrain: {epochs: 2}\n"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            "datasets: [{name: synthetic, kwargs: {n_train: -5}}]",
            "datasets[0]: synthetic n_train must be in [1, 10,000,000]",
        ),
        (
            "datasets: [{name: synthetic, kwargs: {num_tasks: 0}}]",
            "synthetic num_tasks must be in [1, 1000], got 0",
        ),
        ("datasets: [{name: synthetic, kwargs: {noise: [1]}}]", "synthetic noise must be a number, got [1]"),
        ("datasets: [{name: synthetic, kwargs: {scales: [1, 2]}}]", "scales must be 3 positive numbers"),
        ("datasets: [{name: qm9, kwargs: {graph: bonds}}]", "qm9 graph must be 'complete' or 'bond'"),
        ("datasets: [{name: nyuv2, kwargs: {val_fraction: 1.5}}]", "nyuv2 val_fraction must be in (0, 1)"),
        ("datasets: [{name: office31, kwargs: {image_size: 8}}]", "office31 image_size must be >= 32"),
        (
            "train: {epochs: 2, model_kwargs: {hiddn: 8}}",
            "train.model_kwargs: unknown model argument(s) ['hiddn'] for synthetic (did you mean 'hidden'?); "
            "valid: hidden",
        ),
        (
            "train: {epochs: 2, architecture: mtan}",
            "train.architecture: synthetic supports architectures: hps",
        ),
        ("space: {model.hidden: {choice: [8, 0]}}", "space.model.hidden: synthetic model argument hidden"),
        (
            "space: {dataset.n_val: {int: [0, 9]}}",
            "space.dataset.n_val: synthetic n_val must be in [1, 10,000,000], got 0",
        ),
        ("space: {architecture: {choice: [hps, mtan]}}", "space.architecture: synthetic supports"),
    ],
)
def test_dataset_and_model_arguments_are_checked_at_validation(extra, expected):
    key = extra.split(":")[0]
    text = "\n".join(line for line in MINIMAL.splitlines() if not line.startswith(key)) + "\n" + extra + "\n"
    assert expected in errors_of(text)


def test_validation_checks_dataset_arguments_without_building_the_dataset(monkeypatch):
    import functools

    from mtl.data.synthetic import SyntheticRegression

    def refusing(method):
        @functools.wraps(method)  # keeps the signature and type hints the checks read
        def refuse(*_args, **_kwargs):
            raise AssertionError("validation built the dataset or its model")

        return refuse

    monkeypatch.setattr(SyntheticRegression, "__init__", refusing(SyntheticRegression.__init__))
    monkeypatch.setattr(SyntheticRegression, "build_model", refusing(SyntheticRegression.build_model))
    text = MINIMAL.replace("[synthetic]", "[{name: synthetic, kwargs: {n_train: 64}}]")
    study = parse_study(text, default_name="x")
    assert study.datasets[0].kwargs == {"n_train": 64}


def test_duplicate_yaml_keys_are_rejected_with_their_lines():
    message = errors_of(MINIMAL + "seeds: [0]\ntrain: {epochs: 9}\n")
    assert "duplicate key 'train' (first given on line 3)" in message and "line 5" in message
    nested = errors_of(MINIMAL.replace("{epochs: 2}", "{epochs: 2, lr: 0.1, lr: 0.2}"))
    assert "duplicate key 'lr'" in nested
    # a key given next to a merge key overrides the merged one: not a duplicate
    merged = MINIMAL.replace("train: {epochs: 2}", "train: {<<: {epochs: 2, lr: 0.1}, epochs: 3}")
    assert parse_study(merged, default_name="x").train.epochs == 3


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("seeds: [true]", "seeds[0]: Input should be a valid integer, not a boolean"),
        ("search: {seed: false}", "search.seed: Input should be a valid integer, not a boolean"),
        ("search: {seed: -1}", "search.seed: Input should be greater than or equal to 0"),
        ("search: {seed: 4294967296}", "search.seed: Input should be less than or equal to 4294967295"),
        ("max_failures: true", "max_failures: Input should be a valid integer, not a boolean"),
        ('storage: ""', "storage: empty"),
        ('storage: "  "', "storage: empty"),
        ("space: {lrr: {loguniform: [1.0e-4, 1.0e-2]}}", "space.lrr: unknown hyperparameter 'lrr'"),
    ],
)
def test_values_accepted_silently_before_are_rejected(extra, expected):
    assert expected in errors_of(MINIMAL + extra + "\n")


def test_a_searched_name_typo_suggests_the_training_setting():
    message = errors_of(MINIMAL + "space: {lrr: {loguniform: [1.0e-4, 1.0e-2]}}\n")
    assert "(did you mean 'lr'?)" in message and "lr, batch_size" in message and "valid: log" in message
    assert message.count("unknown hyperparameter 'lrr'") == 1
    model_typo = errors_of(MINIMAL + "space: {model.hiden: {choice: [8]}}\n")
    assert (
        "space.model.hiden: unknown model argument(s) ['hiden'] for synthetic (did you mean 'hidden'?)"
        in model_typo
    )


def test_storage_on_an_existing_file_is_rejected_and_uris_are_not_probed(tmp_path):
    blocker = tmp_path / "results.txt"
    blocker.write_text("")
    for storage in (blocker, blocker / "deeper"):
        message = errors_of(MINIMAL + f"storage: '{storage}'\n")
        assert f"storage: '{blocker}' is a file, not a folder" in message
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "x").write_text("")  # the study's own folder would be this file
    assert "is a file, not a folder" in errors_of(MINIMAL + f"storage: '{tmp_path / 'store'}'\n")
    assert parse_study(MINIMAL + "storage: s3://bucket/prefix\n", default_name="x").storage.startswith(
        "s3://"
    )
    assert parse_study(MINIMAL + f"storage: '{tmp_path / 'new' / 'dir'}'\n", default_name="x")
    assert not (tmp_path / "new").exists()  # validation creates nothing


def test_a_binary_study_file_is_a_clear_error(tmp_path, capsys):
    path = tmp_path / "study.yaml"
    path.write_bytes(b"\x1f\x8b\x08\x00" + bytes(range(128, 256)))
    with pytest.raises(StudyError, match=r"not a text \(UTF-8\) file: byte 0x8b at offset 1"):
        load_study(path)
    assert main(["check", str(path)]) == 2
    assert "not a text (UTF-8) file" in capsys.readouterr().err


def test_a_study_that_fails_validation_starts_nothing(tmp_path, capsys):
    """`study run` on a file whose dataset arguments are out of range: exit 2, no folder, no Ray."""
    import ray

    path = tmp_path / "bad.yaml"
    path.write_text(MINIMAL.replace("[synthetic]", "[{name: synthetic, kwargs: {n_train: -5}}]"))
    storage = tmp_path / "results"
    assert main(["run", str(path), "--storage", str(storage)]) == 2
    assert "datasets[0]: synthetic n_train must be in [1, 10,000,000], got -5" in capsys.readouterr().err
    assert not storage.exists() and not ray.is_initialized()


def test_a_space_of_grid_parameters_only_is_enumerated_under_optuna():
    """stl over its tasks in an Optuna study: every task once per seed (not sampled by TPE)."""
    from study.tuner import make_searcher

    study = parse_study(
        "datasets: [synthetic]\nmethods: [ew, {name: stl, space: {task: {grid: [t0, t1, t2]}}}]\n"
        "seeds: [0, 1]\ntrain: {epochs: 1}\nsearch: {algorithm: optuna, num_samples: 5}\n",
        default_name="x",
    )
    groups = make_searcher(study).groups
    assert groups["synthetic__stl"].algorithm == "grid" and groups["synthetic__stl"].total == 6
    assert groups["synthetic__ew"].total == 2  # nothing searched: each seed once


def test_train_settings_are_derived_from_trainconfig():
    """One definition (issue 16): every training setting of TrainConfig is a `train:` field with its default
    and bounds, and the searchable ones are the search space's training hyperparameters."""
    import dataclasses

    from mtl.config import TRIAL_FIELDS, TrainConfig, searchable_settings
    from study.schema import TrainSettings
    from study.space import TRAIN_HPARAMS

    settings = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in TRIAL_FIELDS]
    assert list(TrainSettings.model_fields) == settings
    assert TRAIN_HPARAMS == searchable_settings() and "lr" in TRAIN_HPARAMS and "device" not in TRAIN_HPARAMS
    study = parse_study(
        "datasets: [synthetic]\nmethods: [ew]\ntrain: {epochs: 1, device_batches: false}\n", default_name="x"
    )
    assert study.train.device_batches is False  # a setting added to TrainConfig reaches the study file
    assert "train.batch_size: Input should be greater than or equal to 1" in errors_of(
        "datasets: [synthetic]\nmethods: [ew]\ntrain: {epochs: 1, batch_size: 0}\n"
    )
