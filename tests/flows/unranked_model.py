"""A model that returns raw regression output instead of ranks: values outside [0, 1]."""

from __future__ import annotations

from models import tournament

DEFAULT_PARAMS = {"n_estimators": 5, "learning_rate": 0.1}
train = tournament.train


def predict(model, data_path, features):
    predictions = tournament.predict(model, data_path, features)
    return predictions * 4 - 2
