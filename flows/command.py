"""Command models: a Classic node whose model is a program, run for `train` and `predict`.

The flow keeps every step it owns (download, validation, submit, report, the model store); the
command only trains and predicts, told where everything is by a small file contract: NUMERAI_*
environment variables, and the same values in a JSON file (NUMERAI_CONTRACT_PATH). It runs in
the project directory, in its own process group, with its output streamed into the run's logs
and a timeout; the Numerai keys and the Prefect API's address are not in its environment.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import selectors
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from flows import cache, files
from flows.command_data import csv_copy
from flows.errors import CommandFailed, CommandTimedOut, ConfigurationError, InvalidPredictions
from flows.node import DataSource, download_dataset
from flows.settings import KEY_ENV, load_settings
from flows.steps import note_failed_step

Step = Literal["train", "predict"]
CONTRACT_ENV = "NUMERAI_CONTRACT_PATH"
_TAIL = 20  # stderr lines an error quotes
_GRACE_SECONDS = 5.0  # between SIGTERM and SIGKILL
_ORPHAN_SECONDS = 2.0  # how long a child left behind may hold the output open
# Credentials by name; PREFECT_API_URL too: its Secret blocks hold the Numerai keys.
_HIDDEN = re.compile(r"SECRET|PASSWORD|TOKEN|API_KEY|PRIVATE_KEY|PUBLIC_ID|AUTH_STRING", re.I)
_HIDDEN_NAMES = {*KEY_ENV, "PREFECT_API_URL"}


class CommandSpec(BaseModel):
    """A model that is a program: the commands that train and predict, and what shapes it."""

    model_config = ConfigDict(extra="forbid")

    train: list[str] = Field(
        min_length=1, description="The command that trains, e.g. `Rscript train.R`."
    )
    predict: list[str] = Field(min_length=1, description="The command that predicts.")
    files: list[str] = Field(
        default_factory=list,
        description="Files or directories (from the project directory) whose contents shape "
        "the model: hashed into its key, so editing one retrains.",
    )
    version: str | None = Field(
        None, description="A version you bump to retrain, instead of `files`."
    )
    data_format: Literal["parquet", "csv"] = Field(
        "parquet",
        description="What NUMERAI_TRAIN_PATH and NUMERAI_LIVE_PATH hold: Numerai's parquet, or "
        "`csv` (id, era, the feature set and the target) for a program that cannot read parquet.",
    )
    train_timeout_seconds: float = Field(6 * 3600, gt=0, description="The train command's limit.")
    predict_timeout_seconds: float = Field(3600, gt=0, description="The predict command's limit.")

    @field_validator("train", "predict", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return shlex.split(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_identity(self) -> CommandSpec:
        if bool(self.files) == (self.version is not None):
            raise ValueError(
                "a command model names what shapes it: either `files:` (hashed into its key) "
                "or `version:` (bumped by you), one of them"
            )
        return self

    def identity(self, root: Path | None = None) -> dict[str, Any]:
        """What goes into the model key: the command lines and the files' contents (or the
        declared version). Fails, naming it, when a declared file is missing."""
        shaped = {"files": _files_digest(self.files, root or Path.cwd())} if self.files else {}
        if self.data_format != "parquet":  # parquet's keys stay as they were before the option
            shaped["data_format"] = self.data_format
        return {"train": self.train, "predict": self.predict, "version": self.version} | shaped

    def data_path(self, path: Path, features_path: Path, feature_set: str, target: str) -> Path:
        """The data file the command is handed: `path` itself, or its CSV copy."""
        if self.data_format == "csv":
            return csv_copy(path, features_path, feature_set, target)
        return path


class Contract(BaseModel):
    """What a command is told: each field is NUMERAI_<FIELD> in its environment, and a key of
    the JSON file at NUMERAI_CONTRACT_PATH. Paths the step has no use for are left out."""

    step: Step
    data_version: str
    feature_set: str
    target: str
    params: dict[str, Any]
    features_path: Path
    model_dir: Path
    train_path: Path | None = None
    live_path: Path | None = None
    predictions_path: Path | None = None
    round: int | None = None

    def env(self, contract_path: Path) -> dict[str, str]:
        values = self.model_dump(mode="json", exclude_none=True)
        env = {f"NUMERAI_{name.upper()}": _text(value) for name, value in values.items()}
        return env | {CONTRACT_ENV: str(contract_path)}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _files_digest(names: list[str], root: Path) -> str:
    digest = hashlib.sha256()
    for name in sorted(names):
        path = root / name
        if not path.exists():
            raise ConfigurationError(
                f"The command model's file '{name}' (in `files:`) is not in {root}: name the "
                "files of your program, from the project directory."
            )
        found = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for item in found:
            if "__pycache__" in item.parts:
                continue
            shown = item.relative_to(root) if item.is_relative_to(root) else item
            digest.update(f"{shown.as_posix()}\0".encode())
            digest.update(hashlib.sha256(item.read_bytes()).digest())
    return digest.hexdigest()


def command_env(contract_env: dict[str, str]) -> dict[str, str]:
    """This process's environment without credentials, plus the contract."""
    kept = {
        name: value
        for name, value in os.environ.items()
        if name not in _HIDDEN_NAMES and not _HIDDEN.search(name)
    }
    return kept | contract_env


def run_command(
    argv: list[str], step: Step, env: dict[str, str], timeout: float, logger: Any
) -> None:
    """Run `argv`, its output line by line into `logger`; stopped (its whole process group)
    past `timeout` seconds. Raises CommandFailed or CommandTimedOut, naming the exit code and
    the last lines of stderr."""
    shown = shlex.join(argv)
    try:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,  # its own process group: a timeout stops all of it
        )
    except OSError as exc:
        raise ConfigurationError(
            f"Cannot start the {step} command `{shown}`: {exc.strerror or exc} (it runs from "
            f"{Path.cwd()}). Nothing was uploaded."
        ) from None
    tail: deque[str] = deque(maxlen=_TAIL)
    try:
        timed_out = _stream(process, step, tail, time.monotonic() + timeout, logger)
    finally:
        _end_group(process)  # a timeout, a cancelled run, or children it left behind
    if timed_out:
        raise CommandTimedOut(
            f"The {step} command `{shown}` ran past its timeout of {timeout:g} s "
            f"({step}_timeout_seconds) and was stopped, with every process it started."
            f"{_quoted(tail)} Nothing was uploaded."
        )
    code = process.returncode
    if code != 0:
        how = f"exit code {code}" if code > 0 else f"signal {signal.Signals(-code).name}"
        raise CommandFailed(
            f"The {step} command `{shown}` failed with {how}.{_quoted(tail)} Nothing was uploaded."
        )


def _quoted(tail: deque[str]) -> str:
    if not tail:
        return " It wrote nothing to stderr."
    return " The last lines of its stderr:\n" + "\n".join(f"    {line}" for line in tail) + "\n"


def _stream(
    process: subprocess.Popen[bytes], step: Step, tail: deque[str], deadline: float, logger: Any
) -> bool:
    """Log the output until both pipes close and the process ends; True when time ran out."""
    selector = selectors.DefaultSelector()
    partial: dict[bool, bytes] = {False: b"", True: b""}
    for pipe, is_stderr in ((process.stdout, False), (process.stderr, True)):
        assert pipe is not None
        selector.register(pipe, selectors.EVENT_READ, is_stderr)
    ended_at: float | None = None
    with selector:
        while selector.get_map():
            now = time.monotonic()
            if now >= deadline:
                return True
            if process.poll() is not None:
                ended_at = ended_at or now
                if now - ended_at > _ORPHAN_SECONDS:
                    break  # a child it left behind holds the output open
            for key, _ in selector.select(timeout=min(deadline - now, 0.5)):
                is_stderr = key.data
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    chunk = b"\n" if partial[is_stderr] else b""
                *lines, partial[is_stderr] = (partial[is_stderr] + chunk).split(b"\n")
                for raw in lines:
                    line = raw.decode(errors="replace").rstrip("\r")
                    if is_stderr:
                        tail.append(line)
                    logger.info("[%s%s] %s", step, " stderr" if is_stderr else "", line)
    try:
        process.wait(timeout=max(deadline - time.monotonic(), 0))
    except subprocess.TimeoutExpired:
        return True
    return False


def _end_group(process: subprocess.Popen[bytes]) -> None:
    """Stop whatever is left of the command's process group: SIGTERM, then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
        stop = time.monotonic() + _GRACE_SECONDS
        while time.monotonic() < stop:
            process.poll()  # reap the leader, or the group never looks empty
            os.killpg(process.pid, 0)  # raises ProcessLookupError once all are gone
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    for pipe in (process.stdout, process.stderr):
        if pipe is not None:
            pipe.close()


def _run(contract: Contract, argv: list[str], timeout: float, contract_path: Path) -> None:
    contract_path.write_text(contract.model_dump_json(indent=2, exclude_none=True))
    env = command_env(contract.env(contract_path))
    run_command(argv, contract.step, env, timeout, get_run_logger())


def _work_dir(prefix: str) -> Path:
    root = load_settings().home / "commands"
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=root)).resolve()


@task(name="train", cache_policy=NO_CACHE, persist_result=False, on_failure=[note_failed_step])
def train_command(
    source: DataSource,
    command: CommandSpec,
    feature_set: str,
    target: str,
    params: dict[str, Any],
) -> Path:
    """Run the train command on the training data; returns the model directory it wrote."""
    features_path = download_dataset(source, "features.json")
    train_path = command.data_path(
        download_dataset(source, "train.parquet"), features_path, feature_set, target
    )
    model_dir = _work_dir("train-")  # the store takes it over
    contract_path = model_dir.with_name(f"{model_dir.name}.json")
    contract = Contract(
        step="train",
        data_version=source.data_version,
        feature_set=feature_set,
        target=target,
        params=params,
        features_path=features_path.resolve(),
        model_dir=model_dir,
        train_path=train_path.resolve(),
    )
    try:
        _run(contract, command.train, command.train_timeout_seconds, contract_path)
        if not any(model_dir.iterdir()):
            raise CommandFailed(
                f"The train command `{shlex.join(command.train)}` ended with exit code 0 but "
                "wrote nothing into NUMERAI_MODEL_DIR: the model store would keep an empty "
                "model. Nothing was uploaded."
            )
    except BaseException:
        shutil.rmtree(model_dir, ignore_errors=True)
        raise
    finally:
        contract_path.unlink(missing_ok=True)
    return model_dir


@task(name="predict", cache_policy=NO_CACHE, persist_result=False, on_failure=[note_failed_step])
def predict_command(
    source: DataSource,
    command: CommandSpec,
    node: str,
    feature_set: str,
    target: str,
    params: dict[str, Any],
    model_dir: Path,
    live_path: Path,
    round_number: int,
) -> Path:
    """Run the predict command on the round's live data; returns the predictions file that
    will be validated and uploaded (CSV, whatever the command wrote: CSV or parquet)."""
    features_path = download_dataset(source, "features.json")
    live_path = command.data_path(live_path, features_path, feature_set, target)
    work = _work_dir("predict-")
    written = work / "predictions.csv"
    contract = Contract(
        step="predict",
        data_version=source.data_version,
        feature_set=feature_set,
        target=target,
        params=params,
        features_path=features_path.resolve(),
        model_dir=model_dir.resolve(),
        live_path=live_path.resolve(),
        predictions_path=written,
        round=round_number,
    )
    try:
        _run(contract, command.predict, command.predict_timeout_seconds, work / "contract.json")
        frame = _read_predictions(written, command.predict)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = cache.predictions_path(source.data_dir, source.data_version, round_number, node)
    with files.atomic_path(out) as tmp:  # columns as written: validation checks them
        frame.to_csv(tmp, index=False)
    get_run_logger().info("The predict command wrote %d rows; kept at %s", len(frame), out)
    return out


def _read_predictions(path: Path, argv: list[str]) -> pd.DataFrame:
    shown = shlex.join(argv)
    if not path.is_file():
        raise InvalidPredictions(
            f"The predict command `{shown}` ended with exit code 0 but wrote no file at "
            "NUMERAI_PREDICTIONS_PATH. Nothing was uploaded."
        )
    try:
        with path.open("rb") as head:
            parquet = head.read(4) == b"PAR1"
        frame = pd.read_parquet(path) if parquet else pd.read_csv(path, dtype={"id": str})
    except (ValueError, OSError) as exc:
        raise InvalidPredictions(
            f"The predictions file of `{shown}` is neither CSV nor parquet with columns id, "
            f"prediction: {exc}. Nothing was uploaded."
        ) from None
    if "id" not in frame.columns and frame.index.name == "id":
        frame = frame.reset_index()
    return frame
