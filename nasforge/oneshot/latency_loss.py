"""Latency in a one-shot architecture loss: the expected latency against a target ``T``.

ProxylessNAS (Cai et al., ICLR 2019, eq. 6 and appendix) adds the expected latency to the loss;
MnasNet's reward (Tan et al., CVPR 2019, eq. 2) multiplies by a power of latency / target. Both
are offered, on ``r = E[LAT] / T``:

* ``form="add"``: ``loss + weight * r``;
* ``form="mul"``: ``loss * r ** weight``;

``kind="soft"`` uses ``r`` as it is (latency always costs); ``kind="hard"`` only what exceeds
the target (``max(r, 1)`` for ``mul``, ``max(r - 1, 0)`` for ``add``), as MnasNet's hard
constraint: under the target accuracy alone decides, so the search settles near it.
"""
from __future__ import annotations

import torch

from nasforge.errors import ConfigError
from nasforge.strategies.policy import check_positive

FORMS = ("add", "mul")
KINDS = ("soft", "hard")


class LatencyLoss:
    def __init__(self, target_ms: float, weight: float, form: str = "mul", kind: str = "soft"):
        check_positive("latency_target", target_ms)
        check_positive("latency_weight", weight)
        if form not in FORMS:
            raise ConfigError(f"Invalid latency_form: {form!r} (allowed: {', '.join(FORMS)})")
        if kind not in KINDS:
            raise ConfigError(f"Invalid latency_kind: {kind!r} (allowed: {', '.join(KINDS)})")
        self.target_ms, self.weight, self.form, self.kind = float(target_ms), float(weight), form, kind

    def __call__(self, loss: torch.Tensor, latency_ms: torch.Tensor) -> torch.Tensor:
        r = latency_ms / self.target_ms
        if self.form == "add":
            return loss + self.weight * (torch.clamp(r - 1, min=0) if self.kind == "hard" else r)
        return loss * (torch.clamp(r, min=1) if self.kind == "hard" else r) ** self.weight
