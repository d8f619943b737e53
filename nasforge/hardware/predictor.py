"""A learned latency predictor: a regression model trained on architectures measured end to end.

:func:`measure_architectures` samples architectures of a space and measures each built network
(:func:`~nasforge.hardware.latency.measure_latency`, the undisturbed ``floor_ms``);
:func:`fit_predictor` holds a quarter of them out, fits scikit-learn's gradient boosting on the
rest and reports its error on the held-out ones (MAPE, stored with the model). The features are
the architecture's encoding (:class:`~nasforge.space.encoding.Encoder`: one-hot choices, scaled
ints) and the network's log FLOPs and log parameter count, which carry most of a CPU's latency;
the target is the log latency (errors are relative). A predictor is saved with the machine it was
measured on, the measurement settings and the space's decisions; loading it for a space whose
decisions differ is refused, and on another machine it warns (its latencies are this machine's).
"""
from __future__ import annotations

import logging
import math
import pickle
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from torch import nn

from nasforge.errors import ConfigError
from nasforge.hardware.cache import LatencyCache, machine_fingerprint
from nasforge.hardware.cost import count_flops, count_params
from nasforge.space.encoding import Encoder
from nasforge.space.space import Space
from nasforge.types import ArchDict

logger = logging.getLogger(__name__)
_FORMAT = "nasforge-latency-predictor"
_VERSION = 1


class LatencyPredictor:
    """``latency_ms(arch, model)``: the predicted forward latency (ms) of a built network."""

    name = "predictor"

    def __init__(self, space: str, columns: Sequence[str], regressor: Any, input_shape: Sequence[int],
                 mape: float, n_train: int, n_test: int, machine: str, settings: Mapping[str, Any]):
        self.space, self.columns, self.regressor = space, list(columns), regressor
        self.input_shape = tuple(input_shape)
        self.mape, self.n_train, self.n_test = float(mape), int(n_train), int(n_test)
        self.machine, self.settings = machine, dict(settings)
        self.encoder: Encoder | None = None

    def features(self, arch: ArchDict, model: nn.Module) -> np.ndarray:
        if self.encoder is None:
            raise RuntimeError("bind the predictor to its space first (LatencyPredictor.bind)")
        flops = count_flops(model, self.input_shape) or 0
        return np.concatenate([self.encoder.encode(arch), [math.log1p(flops), math.log1p(count_params(model))]])

    def latency_ms(self, arch: ArchDict, model: nn.Module) -> float:
        return float(np.exp(self.regressor.predict(self.features(arch, model)[None])[0]))

    def bind(self, space: Space) -> LatencyPredictor:
        """Read architectures of ``space``; refused when its decisions are not those trained on."""
        encoder = Encoder(space.schema)
        if encoder.column_names() != self.columns:
            raise ConfigError(f"the latency predictor was trained on space {self.space!r} ({len(self.columns)} encoded "
                              f"columns); space {space.name!r} encodes {encoder.dim} different ones: train one on it "
                              "(nasforge predictor CONFIG)")
        self.encoder = encoder
        return self

    def summary(self) -> str:
        return (f"latency predictor of space {self.space!r}: MAPE {100 * self.mape:.1f}% on {self.n_test} held-out "
                f"architectures ({self.n_train} trained on), measured on {self.machine}")

    def save(self, path: str | Path) -> None:
        payload = {"format": _FORMAT, "version": _VERSION, **{k: v for k, v in vars(self).items() if k != "encoder"}}
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            pickle.dump(payload, f)

    @classmethod
    def load(cls, path: str | Path) -> LatencyPredictor:
        try:
            with open(path, "rb") as f:
                payload = pickle.load(f)
            if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
                raise ValueError("not a nasforge latency predictor")
            if payload.get("version") != _VERSION:
                raise ValueError(f"version {payload.get('version')!r}, expected {_VERSION}")
            fields = {k: v for k, v in payload.items() if k not in ("format", "version")}
            predictor = cls(**fields)
        except FileNotFoundError:
            raise ConfigError(f"latency predictor {str(path)!r} does not exist; train one with "
                              "`nasforge predictor CONFIG --out FILE`") from None
        except Exception as exc:  # noqa: BLE001 - a damaged or foreign file: say so, whatever pickle raised
            raise ConfigError(f"latency predictor {str(path)!r} cannot be read ({type(exc).__name__}: {exc})") from None
        here = machine_fingerprint(str(predictor.settings.get("device", "cpu")))
        if predictor.machine != here:
            logger.warning("latency predictor %s was measured on %s, not this machine (%s): its latencies are that "
                           "machine's", path, predictor.machine, here)
        return predictor


def measure_architectures(space: Space, n: int, input_shape: Sequence[int], *, seed: int = 0, passes: int = 3,
                          cache: LatencyCache | None = None, **options: Any) -> list[tuple[ArchDict, nn.Module, float]]:
    """``n`` distinct sampled architectures of ``space``, each built and measured (ms: the best
    floor of ``passes``, see :func:`~nasforge.hardware.latency.measure_many`); ``options``
    (``batch_size``, ``threads``, ``device``, ``repeats``, ``min_seconds``) go to the measurement.
    ``cache`` keeps the results (a second call measures nothing again)."""
    rng = np.random.default_rng(seed)
    cache = cache if cache is not None else LatencyCache(None)
    archs: dict[str, ArchDict] = {}
    for _ in range(50 * n):
        if len(archs) == n:
            break
        arch = space.sample(rng)
        archs.setdefault(repr(sorted(arch.items())), arch)
    models = {key: space.build(arch) for key, arch in archs.items()}
    found = cache.get_or_measure_many({key: (space.name, archs[key], models[key], input_shape) for key in archs},
                                      passes=passes, **options)
    return [(archs[key], models[key], found[key].floor_ms) for key in archs]


REGRESSORS = ("linear", "boosting")


def _regressor(kind: str, seed: int) -> Any:
    """``linear``: ridge regression (its penalty chosen by cross-validation) on standardised
    features, for latencies that add up layer by layer; ``boosting``: gradient-boosted trees,
    for interactions (both predict the log latency)."""
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    if kind == "linear":
        return make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))
    if kind == "boosting":
        return GradientBoostingRegressor(n_estimators=300, max_depth=3, learning_rate=0.05, subsample=0.8,
                                         random_state=seed)
    raise ConfigError(f"Invalid predictor kind: {kind!r} (allowed: {', '.join(REGRESSORS)})")


def fit_predictor(space: Space, measured: Sequence[tuple[ArchDict, nn.Module, float]], input_shape: Sequence[int], *,
                  seed: int = 0, test_fraction: float = 0.25, settings: Mapping[str, Any] | None = None,
                  kind: str = "linear") -> LatencyPredictor:
    """Fit a regressor (``kind``, see :data:`REGRESSORS`) on ``1 - test_fraction`` of ``measured``
    and report its MAPE on the rest."""
    from sklearn.metrics import mean_absolute_percentage_error

    if len(measured) < 8:
        raise ConfigError(f"a latency predictor needs at least 8 measured architectures, got {len(measured)}")
    settings = dict(settings or {})
    predictor = LatencyPredictor(space.name, Encoder(space.schema).column_names(), None, input_shape, math.nan, 0, 0,
                                 machine_fingerprint(str(settings.get("device", "cpu"))), settings).bind(space)
    x = np.stack([predictor.features(arch, model) for arch, model, _ in measured])
    y = np.log(np.array([ms for _, _, ms in measured]))
    order = np.random.default_rng(seed).permutation(len(measured))
    n_test = max(2, int(round(test_fraction * len(measured))))
    test, train = order[:n_test], order[n_test:]
    started = time.perf_counter()
    regressor = _regressor(kind, seed).fit(x[train], y[train])
    logger.debug("latency predictor fitted in %.2f s", time.perf_counter() - started)
    mape = mean_absolute_percentage_error(np.exp(y[test]), np.exp(regressor.predict(x[test])))
    predictor.regressor, predictor.mape, predictor.n_train, predictor.n_test = regressor, mape, len(train), len(test)
    return predictor
