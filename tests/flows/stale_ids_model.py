"""A model that predicts for ids from an old live file: the ids do not match this round's."""

from __future__ import annotations

from models import tournament

DEFAULT_PARAMS = {"n_estimators": 5, "learning_rate": 0.1}
train = tournament.train


def predict(model, data_path, features):
    predictions = tournament.predict(model, data_path, features)
    predictions.index = ["n" + name[1:][::-1] for name in predictions.index]
    return predictions
