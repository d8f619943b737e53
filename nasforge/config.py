"""Study configuration: a YAML file validated against these models (unknown keys are rejected).

Every component (space, dataset, strategy, scheduler) is written either as a name
(``strategy: random``) or as a mapping with a name and its arguments
(``strategy: {name: grid, args: {shuffle: true}}``; arguments may also sit beside the name).
"""
from __future__ import annotations

from pathlib import Path
import typing
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from nasforge.errors import ConfigError
from nasforge.yaml_files import read_yaml, shown
from nasforge.types import KNOWN_MODES

DEFAULT_CONFIG = Path(__file__).parent / "defaults" / "default.yaml"
class _Strict(BaseModel):
    # strict: `true` is no count and "3" no number; no infinite or NaN float anywhere
    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True, allow_inf_nan=False)


class Component(_Strict):
    name: str
    args: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"name": value}
        if isinstance(value, dict) and "name" in value:
            extra = {k: v for k, v in value.items() if k not in ("name", "args")}
            if not isinstance(value.get("args") or {}, dict):
                raise ValueError(f"args must be a mapping of argument names to values, got {shown(value['args'])}")
            args = dict(value.get("args") or {})
            overlap = set(extra) & set(args)
            if overlap:
                raise ValueError(f"argument(s) {', '.join(sorted(overlap))} given both beside 'name' and under 'args'")
            return {"name": value["name"], "args": {**args, **extra}}
        return value


MAX_WORKERS = 256


class TrainerConfig(_Strict):
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(0.01, gt=0)
    batch_size: int = Field(32, ge=1)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    device: str = "auto"
    budget_unit: Literal["epochs", "data_fraction"] = "epochs"
    epochs: int = Field(10, ge=1)  # epochs per job when budget_unit is data_fraction
    threads: int = Field(1, ge=1)  # torch threads each process trains with (the driver and every worker)


class ConstraintConfig(_Strict):
    """MnasNet's reward: objective x (metric / target)^w; soft: w = soft_weight both sides; hard:
    w = 0 under the target and hard_weight over it."""

    metric: str = "latency_ms"
    target: float = Field(gt=0)
    kind: Literal["soft", "hard"] = "soft"
    soft_weight: float = -0.07
    hard_weight: float = -1.0


class ObjectiveConfig(_Strict):
    metric: str = "val_loss"
    mode: Literal["min", "max"] = "min"  # may be left out only for a metric in KNOWN_MODES
    constraint: ConstraintConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _known_direction(cls, value: Any) -> Any:
        if not isinstance(value, dict) or value.get("mode") is not None:
            return value
        metric = value.get("metric", "val_loss")
        if not isinstance(metric, str):
            return value  # the field's own check names it
        if metric not in KNOWN_MODES:
            raise ValueError(f"objective metric {metric!r} is not one whose direction nasforge knows "
                             f"({', '.join(KNOWN_MODES)}); set objective.mode to 'min' or 'max'")
        return {**value, "mode": KNOWN_MODES[metric]}

    @model_validator(mode="after")
    def _constraint_needs_max(self) -> "ObjectiveConfig":
        if self.constraint is not None and self.mode != "max":
            raise ValueError("an objective with a constraint must be maximised (e.g. metric: val_accuracy, mode: max)")
        return self


class HardwareConfig(_Strict):
    """Measure every trained model on this machine; adds latency_ms, latency_spread, params, flops."""

    batch_size: int = Field(1, ge=1)
    threads: int = Field(1, ge=1)
    device: str = "cpu"
    repeats: int = Field(30, ge=3)
    min_seconds: float = Field(1.0, ge=0)  # each measurement runs at least this long (to meet an undisturbed phase)
    input_shape: list[Annotated[int, Field(ge=1)]] | None = Field(None, min_length=1)  # one sample's shape; default: the dataset's
    predictor: str | None = None  # a latency predictor file (`nasforge predictor`): latency_ms predicted, not measured
    measure_final: bool = False  # with a predictor: measure the trials trained to the full budget

    @model_validator(mode="after")
    def _final_needs_predictor(self) -> "HardwareConfig":
        if self.measure_final and self.predictor is None:
            raise ValueError("measure_final measures the final trials where a predictor predicts the others: "
                             "give hardware.predictor (a file from `nasforge predictor`) or leave measure_final out")
        return self


class RayConfig(_Strict):
    """Where Ray runs the trials (``executor: ray``): one actor per worker, each asking for
    ``num_cpus`` and ``num_gpus``."""

    address: str | None = None  # None: start a local cluster; "auto": join this machine's; "host:port": a head node
    num_cpus: float = Field(1, gt=0)
    num_gpus: float = Field(0, ge=0)
    checkpoint_dir: str | None = None  # a directory every node reads and writes; None: checkpoints go back to the driver
    runtime_env: dict[str, Any] | None = None  # Ray's runtime_env for the actors (pip packages, working_dir, env_vars)


class StudyConfig(_Strict):
    space: Component = Component(name="mlp")
    dataset: Component = Component(name="iris")  # required beside a custom evaluator ("none": it brings its own)
    strategy: Component = Component(name="random")
    scheduler: Component = Component(name="full")
    evaluator: Component | None = None  # evaluate(model, data, budget, state) by import path; default: the trainer
    executor: str = "auto"  # "auto" or a name in nasforge.execution.EXECUTORS (or an import path)
    store: str = "sqlite"  # a name in nasforge.store.STORES: "memory" keeps the study in this process only
    ray: RayConfig | None = None  # with executor: ray (default: a local cluster, 1 CPU per worker)
    trainer: TrainerConfig = TrainerConfig()
    objective: ObjectiveConfig = ObjectiveConfig()
    hardware: HardwareConfig | None = None  # set it to measure latency, params and FLOPs of every trial
    trials: int = Field(20, ge=1)
    budget: float = Field(30, gt=0)  # the most epochs one trial trains for
    # auto: a worker per usable core (trainer.threads cores each) where trials train together
    # (batched) or in a pool/on Ray; one with the serial executor (a user's evaluator, by default)
    workers: int | Literal["auto"] = "auto"
    seed: int = Field(0, ge=0, le=2**63 - 1)
    keep_checkpoints: int = Field(5, ge=1)  # complete trials whose weights stay on disk (the best ones)
    repeats: bool = False  # evaluate an architecture again when it is proposed again (noisy objectives)
    trial_timeout: float | None = Field(None, gt=0)  # seconds a trial may run before it is stopped and failed
    out: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _trainer_reports_the_objective(cls, value: Any) -> Any:
        """Without an evaluator the metrics are the built-in trainer's: a misspelt one is named
        as such (before any question of its direction)."""
        objective = value.get("objective") if isinstance(value, dict) else None
        metric = objective.get("metric") if isinstance(objective, dict) else None
        if isinstance(value, dict) and value.get("evaluator") is None and isinstance(metric, str):
            from nasforge.execution.worker import HARDWARE_METRICS
            from nasforge.train.trainer import SupervisedTrainer
            reported = dict.fromkeys(SupervisedTrainer.metric_names("classification")
                                     + SupervisedTrainer.metric_names("regression") + HARDWARE_METRICS
                                     + ("latency_predicted_ms",))
            if metric not in reported:
                raise ValueError(f"objective metric {metric!r} is not one the built-in trainer reports; it reports: "
                                 f"{', '.join(reported)} (latency, params and flops with a hardware section)")
        return value

    @model_validator(mode="before")
    @classmethod
    def _data_for_an_evaluator(cls, value: Any) -> Any:
        """The default dataset (iris) serves the built-in trainer; a custom evaluator must say."""
        if isinstance(value, dict) and value.get("evaluator") is not None and value.get("dataset") is None:
            raise ValueError("a custom evaluator is set but no dataset: name the data it is handed "
                             "(e.g. dataset: digits), or dataset: none when it brings its own")
        return value

    @field_validator("space", "dataset", "strategy", "scheduler")
    @classmethod
    def _known_name(cls, value: Component, info: Any) -> Component:
        _registry(info.field_name).check(value.name)
        return value

    @field_validator("workers", mode="before")
    @classmethod
    def _workers(cls, value: Any) -> Any:
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_WORKERS):
            return value
        raise ValueError(f"must be an int from 1 to {MAX_WORKERS}, or auto")

    @field_validator("executor")
    @classmethod
    def _known_executor(cls, value: str) -> str:
        from nasforge.execution import EXECUTORS
        if value != "auto" and value not in EXECUTORS and ":" not in value:
            raise ValueError(f"unknown executor {value!r}; available: auto, {', '.join(EXECUTORS.names())} "
                             f"(or an import path 'package.module:factory')")
        return value

    @field_validator("store")
    @classmethod
    def _known_store(cls, value: str) -> str:
        from nasforge.store import STORES
        if value not in STORES:
            raise ValueError(f"unknown store {value!r}; available: {', '.join(STORES.names())}")
        return value

    @model_validator(mode="after")
    def _ray_settings_need_ray(self) -> "StudyConfig":
        if self.ray is not None and self.executor != "ray":
            raise ValueError(f"a ray section is given but the executor is {self.executor!r}: set executor: ray, or "
                             f"leave the ray section out")
        return self

    @field_validator("evaluator")
    @classmethod
    def _import_path(cls, value: Component | None) -> Component | None:
        if value is not None and ":" not in value.name:
            raise ValueError(f"evaluator must be an import path 'package.module:function' (or a class), got {value.name!r}")
        return value


def _registry(field: str) -> Any:
    if field == "space":
        from nasforge.spaces import SPACES
        return SPACES
    if field == "dataset":
        from nasforge.datasets import DATASETS
        return DATASETS
    if field == "strategy":
        from nasforge.strategies import STRATEGIES
        return STRATEGIES
    from nasforge.schedulers import SCHEDULERS
    return SCHEDULERS


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] = StudyConfig
    for part in loc:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        options = typing.get_args(annotation) or (annotation,)  # an optional section: X | None
        models = [a for a in options if isinstance(a, type) and issubclass(a, BaseModel)]
        if not models:
            return None
        model = models[0]
    return model


def format_validation_error(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        where = ".".join(str(p) for p in loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            parent = _model_at(loc[:-1])
            allowed = ", ".join(parent.model_fields) if parent else "see the config reference"
            lines.append(f"unknown key {where!r}; allowed keys here: {allowed}")
        else:
            msg = str(e["msg"]).removeprefix("Value error, ")
            got = e.get("input")
            quoted = f" (got {shown(got)})" if got is not None and not isinstance(got, dict) else ""
            lines.append(f"{where}: {msg}{quoted}")
    more = f"; and {len(lines) - 3} more" if len(lines) > 3 else ""
    return f"invalid config {source}: " + "; ".join(lines[:3]) + more


def parse_config(data: Any, source: str = "") -> StudyConfig:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"invalid config {source}: the top level must be a mapping of keys, got {type(data).__name__}")
    try:
        return StudyConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> StudyConfig:
    """Read a YAML config (the embedded default when ``path`` is None) and apply overrides."""
    data = read_yaml(path or DEFAULT_CONFIG)
    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = value
    return parse_config(data, str(path) if path else "(embedded default)")


def instantiate(kind: str, component: Component, **fixed: Any) -> Any:
    """Build a component from its registry, checking its arguments against the signature."""
    import inspect
    factory = _registry(kind).get(component.name)
    args = {**component.args, **fixed}
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    if params and not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        unknown = [a for a in args if a not in params]
        if unknown:
            allowed = [p for p in params if p != "self"]
            raise ConfigError(f"{kind} {component.name!r} has no argument(s) {', '.join(unknown)}; allowed: {', '.join(allowed) or 'none'}")
    try:
        return factory(**args)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{kind} {component.name!r}: {exc}") from exc
