"""Schedulers by name: how budget (epochs) is spent across trials (see ``base``)."""
from __future__ import annotations

from nasforge.registry import Registry
from nasforge.schedulers.base import WAIT, Decision, Resume, Scheduler, Start

SCHEDULERS: Registry = Registry("scheduler", {
    "full": "nasforge.schedulers.full:FullBudget",
    "successive_halving": "nasforge.schedulers.successive_halving:SuccessiveHalving",
    "hyperband": "nasforge.schedulers.hyperband:Hyperband",
    "asha": "nasforge.schedulers.asha:ASHA",
})

__all__ = ["SCHEDULERS", "Scheduler", "Start", "Resume", "WAIT", "Decision"]
