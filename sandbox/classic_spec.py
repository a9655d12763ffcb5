"""The hidden structure of synthetic Classic data: names, ids, and era blocks of values."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from sandbox.bins import FEATURE_EDGES, rank_bins, target_bins
from sandbox.errors import SandboxConfigError
from sandbox.sizes import SizePreset

DATA_VERSION = "v5.2"
AUX_TARGET_NAMES = ("cyrus", "teager", "ralph", "victor", "agnes", "jeremy")
FEATURE_GROUPS = (
    "intelligence",
    "charisma",
    "strength",
    "dexterity",
    "constitution",
    "wisdom",
    "agility",
    "serenity",
    "sunshine",
    "rain",
    "midnight",
)
_ADJECTIVES = [
    "abating",
    "ablaze",
    "acold",
    "adroit",
    "airy",
    "amber",
    "arid",
    "balmy",
    "bold",
    "brisk",
    "calm",
    "candid",
    "civil",
    "coy",
    "crisp",
    "deft",
    "dewy",
    "droll",
    "dusky",
    "eager",
    "early",
    "edgy",
    "elfin",
    "faint",
    "fleet",
    "fond",
    "frank",
    "gaunt",
    "glib",
    "grave",
    "hardy",
    "hazy",
    "idle",
    "inert",
    "jaunty",
    "keen",
    "lank",
    "lucid",
    "lusty",
    "mellow",
]
_NOUNS = [
    "alder",
    "aster",
    "badger",
    "bittern",
    "bramble",
    "cedar",
    "condor",
    "coral",
    "crane",
    "dingo",
    "egret",
    "falcon",
    "fennel",
    "ferret",
    "gannet",
    "gecko",
    "heron",
    "hornet",
    "ibis",
    "jackal",
    "kestrel",
    "lark",
    "lemur",
    "linnet",
    "lynx",
    "magpie",
    "marten",
    "merlin",
    "minnow",
    "newt",
    "ocelot",
    "oriole",
    "osprey",
    "otter",
    "owl",
    "petrel",
    "plover",
    "puffin",
    "quail",
    "raven",
]
_ID_BITS = 60
_ID_MASK = np.uint64((1 << _ID_BITS) - 1)
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_SIGNAL_CORR = 0.25


def feature_names(n_features: int) -> list[str]:
    """Word-pair feature names like Numerai's (`feature_abating_alder`), stable for a count."""
    n_adj, n_noun = len(_ADJECTIVES), len(_NOUNS)
    if n_features > n_adj * n_noun:
        raise SandboxConfigError(
            f"at most {n_adj * n_noun} features are supported, not {n_features}"
        )
    # i -> (i % A, (i // A + 17 (i % A)) % N) is a bijection onto word pairs that varies both early.
    return [
        f"feature_{_ADJECTIVES[i % n_adj]}_{_NOUNS[(i // n_adj + 17 * (i % n_adj)) % n_noun]}"
        for i in range(n_features)
    ]


def target_names(n_aux: int) -> list[str]:
    """`target` (alias of the first `_20` target) followed by the auxiliary `_20`/`_60` targets."""
    names = ["target"]
    for name in AUX_TARGET_NAMES[:n_aux]:
        names += [f"target_{name}_20", f"target_{name}_60"]
    return names


def format_ids(counters: np.ndarray, seed: int) -> np.ndarray:
    """Numerai-style ids ("n" + 15 hex chars) from unique counters via a seeded 60-bit bijection."""
    x = counters.astype(np.uint64) & _ID_MASK
    key = np.uint64(int.from_bytes(uuid.uuid5(uuid.NAMESPACE_OID, f"ids/{seed}").bytes[:8]))
    x = (x ^ key) & _ID_MASK
    x = (x * np.uint64(0x9E3779B97F4A7C15)) & _ID_MASK
    x ^= x >> np.uint64(29)
    x = (x * np.uint64(0xBF58476D1CE4E5B9)) & _ID_MASK
    x ^= x >> np.uint64(32)
    shifts = np.arange(56, -1, -4, dtype=np.uint64)
    digits = _HEX[((x[:, None] >> shifts) & np.uint64(0xF)).astype(np.intp)]
    chars = np.concatenate([np.full((len(x), 1), ord("n"), dtype=np.uint8), digits], axis=1)
    return np.ascontiguousarray(chars).view("S16").ravel().astype(str)


def _standardize(values: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance along the last axis (rows within an era)."""
    centred = values - values.mean(axis=-1, keepdims=True)
    scale = centred.std(axis=-1, keepdims=True)
    return centred / np.where(scale > 0, scale, 1.0)


@dataclass(frozen=True)
class ClassicSpec:
    """The hidden structure of one synthetic dataset: factors, signal features, drift, targets."""

    size: SizePreset
    seed: int
    version: str = DATA_VERSION

    @cached_property
    def _params(self) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, 7])
        n_feat = self.size.n_features
        n_factors = int(np.clip(n_feat // 8, 3, 24))
        n_signal = min(12, max(2, n_feat // 2))
        perm = rng.permutation(n_feat)
        signal = np.sort(perm[:n_signal])
        rest = perm[n_signal:]
        n_const = max(2, n_feat // 50)
        const = np.sort(rest[:n_const])
        nullable = np.sort(rng.choice(n_feat, size=max(1, n_feat // 10), replace=False))
        n_aux = 3 if n_feat < 100 else len(AUX_TARGET_NAMES)
        return {
            "loadings": rng.normal(0.0, 0.8, size=(n_feat, n_factors)).astype(np.float32),
            "signal": signal,
            "const": const,
            "nullable": nullable,
            "w_base": rng.normal(0.0, 1.0, size=n_signal),
            "w_drift": rng.normal(0.0, 1.0, size=n_signal),
            # the main target (row 0) follows the documented weights exactly
            "aux_delta": np.vstack(
                [np.zeros(n_signal), rng.normal(0.0, 0.5, size=(n_aux - 1, n_signal))]
            ),
            "order": rng.permutation(n_feat),
        }

    @property
    def features(self) -> list[str]:
        return feature_names(self.size.n_features)

    @property
    def targets(self) -> list[str]:
        return target_names(len(self._params["aux_delta"]))

    @property
    def signal_features(self) -> list[str]:
        """The features whose drifting linear combination drives the target."""
        return [self.features[i] for i in self._params["signal"]]

    @property
    def constant_features(self) -> list[str]:
        """Features that are all 2 in the early eras."""
        return [self.features[i] for i in self._params["const"]]

    @property
    def nullable_features(self) -> set[int]:
        """Positions (in `features`) of the features with rare nulls in the files."""
        return set(self._params["nullable"].tolist())

    @property
    def n_eras(self) -> int:
        return self.size.train_eras + self.size.validation_eras

    @property
    def const_until_era(self) -> int:
        """Constant features are all 2 up to and including this era."""
        return max(1, self.size.train_eras // 5)

    def live_era(self, round_number: int) -> int:
        """The era number of a round's live data."""
        return self.n_eras + round_number

    def weights(self, era: int) -> np.ndarray:
        """The signal weights in `era`: a fixed base plus a slow sinusoidal drift."""
        p = self._params
        return p["w_base"] + 0.6 * p["w_drift"] * np.sin(2 * np.pi * era / 80.0)

    def model_weights(self, target: int = 0) -> np.ndarray:
        """The weights, over `signal_features`, that a model of one target learns (target 0 is
        `target`, 1 the next auxiliary pair...): the base weights, without the drift."""
        p = self._params
        return p["w_base"] + p["aux_delta"][target]

    @property
    def aux_names(self) -> list[str]:
        """The auxiliary target names this dataset has (`cyrus`, ...); the first is `target`'s."""
        return list(AUX_TARGET_NAMES[: len(self._params["aux_delta"])])

    def feature_sets(self) -> dict[str, list[str]]:
        """`small` ⊂ `medium` ⊂ `all`, plus one set per latent-factor group like Numerai's."""
        p, names = self._params, self.features
        n = len(names)
        signal = list(p["signal"])
        others = [i for i in p["order"] if i not in set(signal)]
        n_small, n_medium = max(4, n // 5), max(8, n // 2)
        small = signal[: n_small // 2] + others[: n_small - n_small // 2]
        medium = small + [i for i in p["order"] if i not in set(small)][: n_medium - len(small)]
        sets = {
            "small": [names[i] for i in sorted(small)],
            "medium": [names[i] for i in sorted(medium)],
            "all": list(names),
        }
        group_of = np.abs(p["loadings"]).argmax(axis=1) % len(FEATURE_GROUPS)
        for g, group in enumerate(FEATURE_GROUPS):
            members = [names[i] for i in range(n) if group_of[i] == g]
            if members:
                sets[group] = members
        return sets

    def features_json(self) -> dict[str, object]:
        """The contents of `features.json`."""
        return {"feature_sets": self.feature_sets(), "targets": self.targets}

    def block(self, eras: np.ndarray, rows: int, stream: int) -> tuple[np.ndarray, np.ndarray]:
        """Features (eras, F, rows) int8 and targets (eras, T, rows) float32 for `eras`."""
        p = self._params
        n_feat, n_factors = p["loadings"].shape
        n_aux = len(p["aux_delta"])
        raw = np.empty((len(eras), n_feat, rows), dtype=np.float32)
        noise = np.empty((len(eras), 2 * n_aux, rows), dtype=np.float64)
        for k, era in enumerate(eras):
            rng = np.random.default_rng([self.seed, stream, int(era)])
            factors = rng.standard_normal((n_factors, rows), dtype=np.float32)
            raw[k] = rng.standard_normal((n_feat, rows), dtype=np.float32)
            raw[k] += p["loadings"] @ factors
            noise[k] = rng.standard_normal((2 * n_aux, rows))
        features = rank_bins(raw, FEATURE_EDGES)
        del raw
        early = np.flatnonzero(eras <= self.const_until_era)
        if len(early):
            features[np.ix_(early, p["const"])] = 2
        return features, self._targets(features, eras, noise)

    def _targets(self, features: np.ndarray, eras: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """Main and auxiliary targets, binned 5/20/50/20/5 % within each era."""
        p = self._params
        centred = features[:, p["signal"], :].astype(np.float64) - 2.0
        noise_scale = np.sqrt(1.0 / _SIGNAL_CORR**2 - 1.0)
        base = np.stack([self.weights(int(e)) for e in eras])
        columns = []
        for a, delta in enumerate(p["aux_delta"]):
            signal = _standardize(np.einsum("efr,ef->er", centred, base + delta))
            t20 = signal + noise_scale * noise[:, 2 * a]
            t60 = 0.8 * _standardize(t20) + 0.6 * noise[:, 2 * a + 1]
            columns += [t20, t60]
        binned = target_bins(np.stack(columns, axis=1))
        # `target` is an alias of the first `_20` target, as in Numerai's files.
        return np.concatenate([binned[:, :1], binned], axis=1)
