"""A command model for the flow tests: `model.py train|predict|fail|columns|nan|hang`.

It reads the contract from NUMERAI_* variables and the JSON file, like a user's program would;
each step appends a line to $COMMAND_MODEL_MARKER, so a test sees what ran and what it was told.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

step = sys.argv[1]
contract = json.loads(Path(os.environ["NUMERAI_CONTRACT_PATH"]).read_text())
hidden = [name for name in ("NUMERAI_SECRET_KEY", "NUMERAI_PUBLIC_ID") if name in os.environ]
with open(os.environ["COMMAND_MODEL_MARKER"], "a") as marker:
    marker.write(json.dumps({"step": step, "contract": contract, "secrets": hidden}) + "\n")
model_dir = Path(os.environ["NUMERAI_MODEL_DIR"])


def read(path: str, columns: list[str]) -> pd.DataFrame:
    """The data as handed: parquet, or CSV (a spec's `data_format: csv`)."""
    if path.endswith(".csv"):
        return pd.read_csv(path, usecols=["id", *columns], dtype={"id": str})
    return pd.read_parquet(path, columns=columns)


if step == "train":
    features = json.loads(Path(os.environ["NUMERAI_FEATURES_PATH"]).read_text())
    chosen = features["feature_sets"][os.environ["NUMERAI_FEATURE_SET"]]
    rows = len(read(os.environ["NUMERAI_TRAIN_PATH"], [chosen[0]]))
    print(f"trained on {rows} rows")
    (model_dir / "model.json").write_text(json.dumps({"feature": chosen[0], "rows": rows}))
elif step == "fail":
    for line in range(1, 31):
        print(f"problem line {line}", file=sys.stderr)
    sys.exit(3)
elif step == "hang":
    child = subprocess.Popen(["sleep", "60"])
    Path(os.environ["COMMAND_MODEL_PIDS"]).write_text(f"{os.getpid()} {child.pid}")
    time.sleep(60)
else:  # predict, or a malformed prediction
    feature = json.loads((model_dir / "model.json").read_text())["feature"]
    live = read(os.environ["NUMERAI_LIVE_PATH"], [feature])
    ids = live.index if "id" not in live.columns else live["id"]
    frame = pd.DataFrame({"id": ids, "prediction": live[feature].rank(pct=True).to_numpy()})
    if step == "columns":
        frame = frame.rename(columns={"id": "ticker"})
    elif step == "nan":
        frame.loc[frame.index[:3], "prediction"] = float("nan")
    frame.to_parquet(os.environ["NUMERAI_PREDICTIONS_PATH"], index=False)
    print(f"predicted {len(frame)} rows for round {os.environ['NUMERAI_ROUND']}")
