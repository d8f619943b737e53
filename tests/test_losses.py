"""The stacked trainers' class log-probabilities and cross-entropy against torch's own."""
import pytest
import torch

from nasforge.engine.losses import TRANSPOSED_FROM, cross_entropy, log_softmax_classes


@pytest.mark.parametrize("shape", [(1, 4, 3), (3, 32, 3), (25, 32, 10), (4, 594, 10), (2, 7, 1)])
def test_log_softmax_classes_is_log_softmax_over_the_last_dimension(shape):
    out = torch.randn(*shape, generator=torch.Generator().manual_seed(0)) * 5
    got = log_softmax_classes(out)
    assert got.shape == out.shape
    torch.testing.assert_close(got, torch.log_softmax(out, dim=-1), rtol=0, atol=2e-6)


def test_both_paths_are_taken():
    small, large = torch.zeros(1, 1, TRANSPOSED_FROM - 1), torch.zeros(1, 1, TRANSPOSED_FROM)
    assert log_softmax_classes(small).is_contiguous()
    assert not log_softmax_classes(large.view(1, 16, -1)).is_contiguous()  # the transposed view


@pytest.mark.parametrize("shape", [(2, 5, 3), (20, 50, 3), (6, 100, 10)])
def test_cross_entropy_is_each_candidates_mean(shape):
    g = torch.Generator().manual_seed(1)
    out = torch.randn(*shape, generator=g) * 3
    y = torch.randint(0, shape[-1], shape[:2], generator=g)
    want = torch.stack([torch.nn.functional.cross_entropy(out[c], y[c]) for c in range(shape[0])])
    torch.testing.assert_close(cross_entropy(out, y), want, rtol=1e-6, atol=1e-6)
    shared = y[:1].expand(shape[0], -1)  # the validation labels, one tensor for all candidates
    torch.testing.assert_close(cross_entropy(out, shared), torch.stack(
        [torch.nn.functional.cross_entropy(out[c], y[0]) for c in range(shape[0])]), rtol=1e-6, atol=1e-6)
