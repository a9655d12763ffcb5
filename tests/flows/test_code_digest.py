"""The model cache key covers the project code a model imports, not only the model's own file."""

from __future__ import annotations

import importlib
import sys

import models.tournament
from flows.node import DataSource, code_digest
from flows.training import ClassicSpec, model_key


def _write(root, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_editing_a_helper_the_model_imports_changes_the_digest(tmp_path, monkeypatch):
    _write(
        tmp_path,
        {
            "mymodels/__init__.py": "",
            "mymodels/model.py": "from mymodels import helpers\nimport json\n\n"
            "def train():\n    return helpers.scale()\n\n\ndef predict():\n    return 0\n",
            "mymodels/helpers.py": "from mymodels.deeper import factor\n\n"
            "def scale():\n    return factor() * 2\n",
            "mymodels/deeper.py": "def factor():\n    return 1\n",
            "mymodels/unused.py": "X = 1\n",
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [n for n in sys.modules if n == "mymodels" or n.startswith("mymodels.")]:
        monkeypatch.delitem(sys.modules, name)
    model = importlib.import_module("mymodels.model")
    before = code_digest(model)
    spec = ClassicSpec(name="mine", model="mymodels.model", data_version="v5.2")
    source = DataSource(
        api_url="http://127.0.0.1:1/", tournament=8, data_version="v5.2", data_dir=tmp_path
    )
    key = model_key(spec, source)

    (tmp_path / "mymodels/unused.py").write_text("X = 2\n")  # not imported: no retrain
    assert code_digest(model) == before and model_key(spec, source) == key
    (tmp_path / "mymodels/deeper.py").write_text("def factor():\n    return 3\n")  # imported
    assert code_digest(model) != before
    assert model_key(spec, source) != key, "the model store's key follows the helper's code"


def test_the_example_model_covers_its_frames_helper_and_no_installed_package():
    from flows.node import _own_sources

    names = sorted(path.name for path in _own_sources(models.tournament))
    assert names == ["footprint.py", "frames.py", "tournament.py"]
