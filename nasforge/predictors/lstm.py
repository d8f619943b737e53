"""PNAS's surrogate: an LSTM reads an architecture's tokens and predicts its loss; an ensemble
of them, each trained on a different part of the pairs (Liu et al. 2018, section 3.3).

Losses are learned as z-scores with an L1 loss, as the paper does on accuracies; the network is
small (embedding 32, hidden 64) because the study has tens to hundreds of pairs, not thousands.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from nasforge.errors import ConfigError
from nasforge.predictors.base import standardise
from nasforge.predictors.folds import member_rows
from nasforge.predictors.tokens import Tokens
from nasforge.space.schema import Schema
from nasforge.train.state import torch_threads
from nasforge.types import ArchDict


class _Reader(nn.Module):
    def __init__(self, vocab: int, embed: int, hidden: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed, padding_idx=0)
        self.number = nn.Linear(1, embed)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, ids: torch.Tensor, numbers: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids) + self.number(numbers.unsqueeze(-1))
        out, _ = self.lstm(x)  # padding comes after each sequence: the state at its last token is its own
        return self.head(out[torch.arange(len(ids)), lengths - 1]).squeeze(-1)


class LstmEnsemble:
    """``members`` LSTM readers; member m learns from all pairs but the m-th fold.

    Args:
        members: readers in the ensemble (>= 1; the paper uses 5).
        epochs: passes over the pairs per fit (mini-batches of 64).
        lr: Adam's learning rate.
        embed, hidden: sizes of the token embedding and of the LSTM state.
    """

    def __init__(self, members: int = 5, epochs: int = 60, lr: float = 0.01, embed: int = 32, hidden: int = 64):
        for name, value in (("members", members), ("epochs", epochs), ("embed", embed), ("hidden", hidden)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"Invalid {name} for the lstm surrogate: {value!r} (must be an int >= 1)")
        self.members, self.epochs, self.lr, self.embed, self.hidden = members, epochs, float(lr), embed, hidden
        self.nets: list[_Reader] = []

    def bind(self, schema: Schema) -> None:
        self.tokens = Tokens(schema)

    def fit(self, archs: Sequence[ArchDict], losses: np.ndarray, seed: int) -> None:
        z, _, _ = standardise(np.asarray(losses, dtype=np.float64))
        ids, numbers, lengths = self.tokens.batch(archs)
        target = torch.as_tensor(z, dtype=torch.float32)
        self.nets = []
        with torch.random.fork_rng(devices=[]), torch_threads(1):
            for m, rows in enumerate(member_rows(len(archs), self.members, seed)):
                torch.manual_seed(seed + m)
                net = _Reader(self.tokens.size, self.embed, self.hidden)
                self._train(net, ids[rows], numbers[rows], lengths[rows], target[rows])
                self.nets.append(net.eval())

    def _train(self, net: _Reader, ids: torch.Tensor, numbers: torch.Tensor, lengths: torch.Tensor,
               target: torch.Tensor) -> None:
        optimiser = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=1e-4)
        n = len(target)
        for _ in range(self.epochs):
            for batch in torch.randperm(n).split(64):
                optimiser.zero_grad()
                loss = (net(ids[batch], numbers[batch], lengths[batch]) - target[batch]).abs().mean()
                loss.backward()
                optimiser.step()

    def predict_members(self, archs: Sequence[ArchDict]) -> np.ndarray:
        out = np.empty((len(self.nets), len(archs)))
        with torch.no_grad(), torch_threads(1):
            for start in range(0, len(archs), 4096):
                ids, numbers, lengths = self.tokens.batch(archs[start: start + 4096])
                for m, net in enumerate(self.nets):
                    out[m, start: start + len(ids)] = net(ids, numbers, lengths).numpy()
        return out
