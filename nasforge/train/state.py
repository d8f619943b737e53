"""Small helpers for torch state: seeding and snapshots."""
from __future__ import annotations

import contextlib
import dataclasses
from collections import OrderedDict
from typing import Any, Callable, Iterator

import torch


def seed_torch(seed: int) -> None:
    """``torch.manual_seed``, without its per-call cost on CPU-only machines (it records a stack
    trace for each accelerator it seeds lazily, about 1 ms a call)."""
    if torch.cuda.is_available():
        torch.manual_seed(seed)
    else:
        torch.default_generator.manual_seed(seed)


def map_leaves(obj: Any, leaf: Callable[[Any], Any]) -> Any:
    """``obj`` rebuilt with ``leaf(x)`` for every ``x`` inside it that is not a dict, list, tuple
    or dataclass instance (those are walked and rebuilt; named tuples are leaves). An
    ``OrderedDict`` stays one and keeps a state dict's ``_metadata``; other dicts become dicts."""
    if isinstance(obj, (torch.Tensor, str, int, float)) or obj is None:  # the common leaves, decided at once
        return leaf(obj)
    if isinstance(obj, dict):
        out = OrderedDict((k, map_leaves(v, leaf)) for k, v in obj.items()) if isinstance(obj, OrderedDict) else \
            {k: map_leaves(v, leaf) for k, v in obj.items()}
        metadata = getattr(obj, "_metadata", None)
        if metadata is not None:
            out._metadata = metadata  # type: ignore[attr-defined]
        return out
    if isinstance(obj, (list, tuple)) and not hasattr(obj, "_fields"):
        return type(obj)(map_leaves(v, leaf) for v in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(obj, **{f.name: map_leaves(getattr(obj, f.name), leaf)
                                           for f in dataclasses.fields(obj) if f.init})
    return leaf(obj)


def clone_state(obj: Any) -> Any:
    """A snapshot of nested dicts/lists of tensors that later training cannot change; a few times
    cheaper than ``copy.deepcopy``. Keeps a state dict's ``_metadata``."""
    return map_leaves(obj, lambda v: v.detach().clone() if isinstance(v, torch.Tensor) else v)


def optimizer_slots(make_optimizer: Any, model: torch.nn.Module, saved: dict[str, Any]) -> tuple[list[dict[str, torch.Tensor]], Any]:
    """A one-model optimiser state dict as per-parameter slots (model parameter order, "step"
    left out) and the step count. Read straight from the dict (building an optimiser to load it
    into costs ~0.5 ms); a dict that does not fit the model goes through ``make_optimizer(params)``
    so torch names the mismatch. The slots alias ``saved``: callers copy them."""
    params = list(model.parameters())
    ids = [i for group in saved.get("param_groups", []) for i in group["params"]]
    per_param = [saved.get("state", {}).get(i, {}) for i in ids]
    if len(ids) != len(params):
        single = make_optimizer(params)
        single.load_state_dict(clone_state(saved))
        per_param = [single.state.get(p, {}) for p in params]
    slots = [{k: v for k, v in s.items() if k != "step"} for s in per_param]
    step = per_param[0].get("step") if per_param else None
    return slots, step


def with_step(step: Any, slots: dict[str, torch.Tensor]) -> dict[str, Any]:
    """One parameter's optimiser state: its slots and, for optimisers that count steps (Adam, not
    SGD: ``step`` None), a step tensor of its own (float32, which the fused kernels need)."""
    return dict(slots) if step is None else {"step": torch.as_tensor(step, dtype=torch.float32).clone(), **slots}


def optimizer_state(group: dict[str, Any], slots: list[dict[str, torch.Tensor]], step: Any) -> dict[str, Any]:
    """The inverse of :func:`optimizer_slots`: the state dict torch.optim would write for one
    model's parameters, given their slots, the step count and the optimiser's param-group
    settings (``SupervisedTrainer.param_group``)."""
    state = {i: with_step(step, slot) for i, slot in enumerate(slots) if slot}
    return {"state": state, "param_groups": [{**group, "params": list(range(len(slots)))}]}


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run a block with ``torch.set_num_threads(threads)``, restoring the count after. Tiny models
    (controllers, surrogates) run fastest on one thread, and spin-waiting threads of a busy
    process slow everything else down."""
    previous = torch.get_num_threads()
    if previous == threads:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
