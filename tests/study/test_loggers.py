"""Issue 14 item 4: `loggers: [tensorboard, mlflow]` through Ray Tune's own callbacks; checked before
anything runs, and read back with TensorBoard's event format and MLflow's own client."""

from __future__ import annotations

import importlib.util

import pytest

from study.schema import StudyError, validate_study

from .conftest import study_dict


def problems_of(data) -> str:
    with pytest.raises(StudyError) as info:
        validate_study(data)
    return str(info.value)


def test_logger_entries_are_checked_before_anything_runs(tmp_path, monkeypatch):
    text = problems_of(study_dict(tmp_path, "l", loggers=["tensorboard", "tensorbord"]))
    assert "loggers.1" in text or "loggers[1]" in text
    assert "'tensorboard'" in text and "'mlflow'" in text  # the valid names are listed
    text = problems_of(study_dict(tmp_path, "l", loggers=["tensorboard", "tensorboard"]))
    assert "loggers[1]: 'tensorboard' is listed twice (loggers[0])" in text
    text = problems_of(study_dict(tmp_path, "l", loggers=[{"name": "tensorboard", "tracking_uri": "x"}]))
    assert "tracking_uri and experiment apply to mlflow only" in text
    remote = study_dict(tmp_path, "l", loggers=["mlflow"])
    remote["storage"] = "s3://bucket/studies"
    assert "loggers[0].tracking_uri: the study's storage 's3://bucket/studies' is not local" in problems_of(
        remote
    )
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real_find_spec(name, *a)
    )
    assert "loggers[0]: mlflow is not installed: pip install 'mtl-study[mlflow]'" in problems_of(
        study_dict(tmp_path, "l", loggers=["mlflow"])
    )


def test_default_mlflow_store_is_in_the_study_folder(tmp_path):
    from study.loggers import mlflow_tracking_uri

    study = validate_study(study_dict(tmp_path, "l", loggers=["tensorboard"]))
    entry = type(study.loggers[0])(name="mlflow")
    db = (tmp_path / "results" / "l" / "mlflow.db").resolve()
    assert mlflow_tracking_uri(entry, study) == f"sqlite:///{db}"
    entry = type(study.loggers[0])(name="mlflow", tracking_uri="http://mlflow:5000")
    assert mlflow_tracking_uri(entry, study) == "http://mlflow:5000"


@pytest.mark.usefixtures("ray_clean")
def test_tensorboard_and_mlflow_receive_every_trial_and_epoch(tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient
    from tensorboardX.proto import event_pb2

    from results_store.reader import read_trials
    from study.runner import run_study

    epochs = 2
    data = study_dict(
        tmp_path,
        "logged",
        methods=["ew", "db_mtl"],
        seeds=[0],
        train={"epochs": epochs},
        scheduler={"type": "none"},
        loggers=["tensorboard", {"name": "mlflow", "experiment": "logged-exp"}],
    )
    report = run_study(validate_study(data))
    assert not report.interrupted
    location = tmp_path / "results" / "logged"
    trials = read_trials(str(location))
    assert sorted(trials["status"]) == ["completed", "completed"]

    # TensorBoard: one event file per trial under the study folder, holding val_delta_p for every epoch
    events = sorted((location / "tune").rglob("events.out.tfevents*"))
    assert len(events) == len(trials), events
    for path in events:
        raw = path.read_bytes()
        steps = set()
        offset = 0
        while offset < len(raw):  # TFRecord framing: length (8) + crc (4) + data + crc (4)
            length = int.from_bytes(raw[offset : offset + 8], "little")
            event = event_pb2.Event.FromString(raw[offset + 12 : offset + 12 + length])
            offset += 16 + length
            steps |= {event.step for v in event.summary.value if v.tag.endswith("val_delta_p")}
        assert len(steps) == epochs, (path, steps)

    # MLflow: one run per trial in the named experiment of the study's own store; every epoch logged
    client = MlflowClient(tracking_uri=f"sqlite:///{(location / 'mlflow.db').resolve()}")
    experiment = client.get_experiment_by_name("logged-exp")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == len(trials)
    for run in runs:
        history = client.get_metric_history(run.info.run_id, "val_delta_p")
        assert len(history) == epochs
        assert run.data.tags.get("study") == "logged"
        per_task = [k for k in run.data.metrics if k.startswith("val/")]
        assert per_task, run.data.metrics  # the per-task metrics reach the loggers too
    values = {
        round(h.value, 6) for r in runs for h in client.get_metric_history(r.info.run_id, "val_delta_p")
    }
    stored = {round(v, 6) for v in trials["best_val_delta_p"]}
    assert stored <= values  # what MLflow holds is what Parquet holds
