"""The encoder's memory settings: what training keeps for backward, and what it must not change."""

import pytest
import torch

from brainlit.models.encoder import PatchEncoder


def saved_bytes(module: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes of the distinct storages a training forward of ``module`` keeps for backward."""
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        if not isinstance(tensor, torch.nn.Parameter):
            storage = tensor.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        module(x).sum().backward()
    return sum(storages.values())


def test_dropout_leaves_attention_probabilities_alone_so_no_roi_by_roi_matrix_is_kept():
    # 96 ROIs, 4 patches: an [R, R] probability matrix per patch and head is 9 x the tokens' size
    torch.manual_seed(0)
    x = torch.randn(2, 96, 32)
    default = PatchEncoder(96, patch_len=8, d_model=16, depth=1, n_heads=2, dropout=0.1).train()
    probabilities = PatchEncoder(
        96, patch_len=8, d_model=16, depth=1, n_heads=2, dropout=0.1, attention_dropout=0.1
    ).train()
    kept, kept_with_probabilities = saved_bytes(default, x), saved_bytes(probabilities, x)
    matrices = 2 * 4 * 2 * 96 * 96 * 4  # batch x patches x heads x R x R floats
    assert kept_with_probabilities - kept > matrices  # the default keeps none of them


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_activation_checkpointing_keeps_less_and_changes_no_gradient(dropout):
    x = torch.randn(2, 12, 32)
    grads, kept = [], []
    for checkpoint in (False, True):
        torch.manual_seed(0)
        encoder = PatchEncoder(12, patch_len=8, d_model=16, depth=2, n_heads=2, dropout=dropout,
                               attention_dropout=dropout, checkpoint=checkpoint).train()
        torch.manual_seed(1)  # the same dropout masks in both runs
        kept.append(saved_bytes(encoder, x))
        grads.append({n: p.grad.clone() for n, p in encoder.named_parameters() if p.grad is not None})
    assert kept[1] < kept[0] / 2
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], msg=name)


def test_checkpointing_is_a_training_setting_only():
    torch.manual_seed(0)
    x = torch.randn(2, 12, 32)
    plain = PatchEncoder(12, patch_len=8, d_model=16, depth=2, n_heads=2).eval()
    recomputing = PatchEncoder(12, patch_len=8, d_model=16, depth=2, n_heads=2, checkpoint=True).eval()
    recomputing.load_state_dict(plain.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(recomputing(x), plain(x))
