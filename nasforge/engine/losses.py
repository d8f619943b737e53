"""Class log-probabilities of stacked candidates' outputs, fast for few classes.

ATen's log_softmax over a small last dimension (a handful of classes) runs one short row at a
time: 25 candidates x 32 rows x 10 classes took 147 us, against 18 over the middle dimension of
the transposed view, where the kernel vectorises across rows (the same values up to an ulp). The
transposed path costs ~11 us of copying and dispatch whatever the size, so below
:data:`TRANSPOSED_FROM` elements the plain call is the faster one.
"""
from __future__ import annotations

import torch

TRANSPOSED_FROM = 512
"""Elements from which the transposed path is faster (one core: 384 elements 10.2 us plain
against 12.5, 640 elements 16.0 against 12.6)."""


def log_softmax_classes(out: torch.Tensor) -> torch.Tensor:
    """``log_softmax(out, dim=-1)`` of outputs (C, N, K); for the larger ones a view whose class
    dimension is not the innermost in memory."""
    if out.numel() < TRANSPOSED_FROM:
        return torch.log_softmax(out, dim=-1)
    return torch.log_softmax(out.transpose(-1, -2), dim=-2).transpose(-1, -2)


def mean_nll(logp: torch.Tensor, picks: torch.Tensor) -> torch.Tensor:
    """Per-candidate mean negative log-likelihood (C,) of log-probabilities (C, N, K) at the
    labels ``picks`` (C, N, 1)."""
    return logp.gather(-1, picks).mean(1).squeeze(-1).neg_()


def cross_entropy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-candidate mean cross-entropy (C,) of outputs (C, N, K) against labels (C, N)."""
    return mean_nll(log_softmax_classes(out), y.unsqueeze(-1))
