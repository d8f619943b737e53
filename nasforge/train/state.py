"""Small helpers for torch state: seeding and snapshots."""
from __future__ import annotations

import contextlib
from collections import OrderedDict
from typing import Any, Iterator

import torch


def seed_torch(seed: int) -> None:
    """``torch.manual_seed``, without its per-call cost on CPU-only machines (it records a stack
    trace for each accelerator it seeds lazily, about 1 ms a call)."""
    if torch.cuda.is_available():
        torch.manual_seed(seed)
    else:
        torch.default_generator.manual_seed(seed)


def clone_state(obj: Any) -> Any:
    """A snapshot of nested dicts/lists of tensors that later training cannot change; a few times
    cheaper than ``copy.deepcopy``. Keeps a state dict's ``_metadata``."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        out = OrderedDict((k, clone_state(v)) for k, v in obj.items()) if isinstance(obj, OrderedDict) else \
            {k: clone_state(v) for k, v in obj.items()}
        metadata = getattr(obj, "_metadata", None)
        if metadata is not None:
            out._metadata = metadata  # type: ignore[attr-defined]
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(clone_state(v) for v in obj)
    return obj


def optimizer_slots(make_optimizer: Any, model: torch.nn.Module, saved: dict[str, Any]) -> tuple[list[dict[str, torch.Tensor]], Any]:
    """A one-model optimiser state dict as per-parameter slots (model parameter order, "step"
    left out) and the step count. ``make_optimizer(params)`` builds the optimiser it came from."""
    params = list(model.parameters())
    single = make_optimizer(params)
    single.load_state_dict(clone_state(saved))
    slots = [{k: v for k, v in single.state[p].items() if k != "step"} for p in params]
    step = single.state[params[0]].get("step") if params and params[0] in single.state else None
    return slots, step


def optimizer_state(make_optimizer: Any, model: torch.nn.Module, slots: list[dict[str, torch.Tensor]], step: Any) -> dict[str, Any]:
    """The inverse of :func:`optimizer_slots`: a one-model optimiser state dict from slots."""
    params = list(model.parameters())
    single = make_optimizer(params)
    for p, slot in zip(params, slots):
        if slot:
            single.state[p] = {"step": step.clone() if isinstance(step, torch.Tensor) else step, **slot}
    return single.state_dict()


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
