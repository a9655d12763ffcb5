"""Model modules that misbehave the ways real ones do, to prove validation stops them."""

from __future__ import annotations

import numpy as np

from models import tournament

DEFAULT_PARAMS = {"n_estimators": 5, "learning_rate": 0.1}
train = tournament.train


def predict(model, data_path, features):
    predictions = tournament.predict(model, data_path, features)
    predictions.iloc[::7] = np.nan
    return predictions
