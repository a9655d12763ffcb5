"""A command model (a program, not a Python module) through the Classic node, against a sandbox:
real subprocesses, the real numerapi over HTTP, a real Prefect API."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pandas as pd
import pytest

from flows.command import CommandSpec
from flows.errors import CommandFailed, CommandTimedOut, ConfigurationError, InvalidPredictions
from flows.store import model_store
from flows.tournament import TournamentNode, tournament_node
from tests.flows.prefect_runs import task_states

SCRIPT = Path(__file__).parent / "command_models" / "model.py"


def _command(predict: str = "predict", train: str = "train", **fields) -> CommandSpec:
    run = [sys.executable, str(SCRIPT)]
    return CommandSpec(train=[*run, train], predict=[*run, predict], files=[str(SCRIPT)], **fields)


def _node(command: CommandSpec, **overrides) -> TournamentNode:
    pinned = {"numerai_model": "sandbox_model", "data_version": "v5.2", "command": command}
    return TournamentNode(**(pinned | overrides))


@pytest.fixture
def marker(tmp_path, monkeypatch) -> Path:
    """The file each step of the command model appends what it was told to."""
    path = tmp_path / "marker.jsonl"
    monkeypatch.setenv("COMMAND_MODEL_MARKER", str(path))
    return path


def _steps(marker: Path) -> list[dict]:
    return [json.loads(line) for line in marker.read_text().splitlines()] if marker.exists() else []


def _failure(state) -> BaseException:
    assert state.is_failed(), f"expected the run to fail, it ended {state.name}"
    return state.result(raise_on_failure=False)


def test_a_command_model_trains_predicts_and_submits_once_with_the_trigger_id(sandbox, marker):
    state = tournament_node(_node(_command()), trigger_id="cmd-a", return_state=True)

    outcome = state.result()
    (submission,) = sandbox.submissions("sandbox_model")
    assert submission.trigger_id == "cmd-a" and outcome.submission_id == submission.id
    assert set(submission.ids) == set(sandbox.live_ids())
    train, predict = _steps(marker)
    assert train["step"] == "train" and predict["step"] == "predict"
    assert train["contract"]["train_path"].endswith("train.parquet")
    assert predict["contract"]["round"] == sandbox.current_round()
    assert predict["contract"]["data_version"] == "v5.2"
    assert train["secrets"] == predict["secrets"] == []  # the Numerai keys stay with the flow
    states = task_states(state)
    assert states["train"] == states["predict"] == states["validate"] == ["Completed"]
    (record,) = model_store().records()
    assert record.artifact == "directory" and record.model.startswith("command: ")


def test_a_new_round_predicts_with_the_stored_model_directory_without_training(sandbox, marker):
    tournament_node(_node(_command()), trigger_id="cmd-round-1")
    sandbox.open_round()
    state = tournament_node(_node(_command()), trigger_id="cmd-round-2", return_state=True)

    assert [step["step"] for step in _steps(marker)] == ["train", "predict", "predict"]
    states = task_states(state)
    assert "train" not in states and states["load-model"] == ["Completed"]
    assert [s.trigger_id for s in sandbox.submissions("sandbox_model")] == [
        "cmd-round-1",
        "cmd-round-2",
    ]


def test_an_edited_declared_file_or_a_new_version_changes_the_model_key(tmp_path):
    from flows.node import DataSource
    from flows.training import ClassicSpec, model_key

    source = DataSource(api_url="http://x", tournament=8, data_version="v5.2", data_dir=tmp_path)
    program = tmp_path / "train.R"
    program.write_text("one")
    by_files = CommandSpec(train="Rscript train.R", predict="Rscript p.R", files=[str(program)])
    first = model_key(ClassicSpec(name="r", command=by_files), source)
    program.write_text("two")
    assert model_key(ClassicSpec(name="r", command=by_files), source) != first
    by_version = CommandSpec(train="a", predict="b", version="1")
    bumped = by_version.model_copy(update={"version": "2"})
    assert model_key(ClassicSpec(name="r", command=by_version), source) != model_key(
        ClassicSpec(name="r", command=bumped), source
    )
    assert by_files.train == ["Rscript", "train.R"]  # a command line is split like a shell's


def test_a_failing_command_fails_the_run_with_its_exit_code_and_last_stderr_lines(sandbox, marker):
    state = tournament_node(_node(_command(train="fail")), trigger_id="cmd-fail", return_state=True)

    error = _failure(state)
    assert isinstance(error, CommandFailed) and not isinstance(error, CommandTimedOut)
    message = str(error)
    assert "exit code 3" in message and "fail`" in message
    assert "problem line 30" in message and "problem line 11" in message
    assert "problem line 10\n" not in message  # only the last 20 lines
    assert sandbox.secret_key not in message
    assert task_states(state)["train"] == ["Failed"]
    assert sandbox.submissions() == [] and model_store().records() == []


@pytest.mark.parametrize(("predict", "message"), [("columns", "ticker"), ("nan", "NaN")])
def test_malformed_predictions_are_stopped_by_validation(sandbox, marker, predict, message):
    state = tournament_node(_node(_command(predict)), trigger_id="cmd-bad", return_state=True)

    error = _failure(state)
    assert isinstance(error, InvalidPredictions) and message in str(error)
    assert task_states(state)["validate"] == ["Failed"]
    assert sandbox.submissions() == []


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"  # a zombie nobody reaped yet has ended


def test_a_hanging_command_is_stopped_by_its_timeout_with_every_process(
    sandbox, marker, tmp_path, monkeypatch
):
    pids = tmp_path / "pids"
    monkeypatch.setenv("COMMAND_MODEL_PIDS", str(pids))
    command = _command("hang", predict_timeout_seconds=2)
    state = tournament_node(_node(command), trigger_id="cmd-hang", return_state=True)

    error = _failure(state)
    assert isinstance(error, CommandTimedOut)
    assert "timeout of 2 s" in str(error) and "hang`" in str(error)
    assert all(_gone(int(pid)) for pid in pids.read_text().split())
    assert sandbox.submissions() == []


def test_a_missing_declared_file_fails_before_any_download(sandbox, marker):
    command = CommandSpec(train="true", predict="true", files=["no/such/program.R"])
    state = tournament_node(_node(command), trigger_id="cmd-missing", return_state=True)

    error = _failure(state)
    assert isinstance(error, ConfigurationError) and "no/such/program.R" in str(error)
    assert "download" not in task_states(state) and _steps(marker) == []


def test_a_node_with_both_a_model_module_and_a_command_is_refused(sandbox):
    node = _node(_command(), model="models.tournament")
    error = _failure(tournament_node(node, trigger_id="both", return_state=True))
    assert isinstance(error, ConfigurationError) and "both `model` and `command`" in str(error)


def test_the_environment_keeps_no_credentials(monkeypatch):
    from flows.command import command_env

    monkeypatch.setenv("NUMERAI_SECRET_KEY", "s3cret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws")
    monkeypatch.setenv("PREFECT_API_URL", "http://prefect")
    monkeypatch.setenv("MY_SETTING", "kept")
    env = command_env({"NUMERAI_ROUND": "7"})
    assert env["MY_SETTING"] == "kept" and env["NUMERAI_ROUND"] == "7"
    assert not {"NUMERAI_SECRET_KEY", "AWS_SECRET_ACCESS_KEY", "PREFECT_API_URL"} & set(env)
    assert "s3cret" not in json.dumps(env) and os.environ["NUMERAI_SECRET_KEY"] == "s3cret"


def test_written_parquet_predictions_are_kept_as_the_csv_that_is_uploaded(sandbox, marker):
    outcome = tournament_node(_node(_command()), trigger_id="cmd-csv")
    written = pd.read_csv(outcome.predictions_path)
    assert list(written.columns) == ["id", "prediction"]
    assert len(written) == len(sandbox.live_ids())


def test_the_training_flow_trains_a_command_model_that_a_node_then_only_predicts_with(
    sandbox, marker
):
    from flows.training import ClassicSpec, train_spec

    spec = ClassicSpec(name="sandbox_model", command=_command(), data_version="v5.2")
    record = train_spec(spec)
    state = tournament_node(
        _node(_command(), train=False), trigger_id="cmd-ahead", return_state=True
    )

    assert record.artifact == "directory" and record.validation is None
    assert [step["step"] for step in _steps(marker)] == ["train", "predict"]
    assert "train" not in task_states(state)
    assert len(sandbox.submissions("sandbox_model")) == 1


def test_a_csv_command_model_is_handed_csv_copies_of_the_feature_set(sandbox, marker):
    command = _command(data_format="csv")
    tournament_node(_node(command), trigger_id="csv-1")
    sandbox.open_round()
    tournament_node(_node(command, train=True), trigger_id="csv-2")

    train, first, second = _steps(marker)
    features_path = Path(train["contract"]["features_path"])
    features = json.loads(features_path.read_text())["feature_sets"]["small"]
    train_csv = Path(train["contract"]["train_path"])
    assert train_csv.suffix == ".csv" and train_csv.with_name("train.parquet").is_file()
    header = pd.read_csv(train_csv, nrows=2).columns
    assert list(header) == ["id", "era", *features, "target"]  # the feature set, not all
    live = [Path(step["contract"]["live_path"]) for step in (first, second)]
    assert all(path.suffix == ".csv" for path in live) and live[0] != live[1]  # per round
    assert set(pd.read_csv(live[1], dtype={"id": str})["id"]) == set(sandbox.live_ids())
    assert [s.trigger_id for s in sandbox.submissions("sandbox_model")] == ["csv-1", "csv-2"]
    assert not list(train_csv.parent.glob(".*.tmp-*"))  # written atomically, nothing left over
