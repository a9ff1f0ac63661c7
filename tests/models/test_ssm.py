"""Selective scan (parallel vs sequential reference, mamba-ssm on GPU) and the Mamba block."""

import pytest
import torch

from brainlit.models.ssm import (
    MambaBlock,
    cuda_selective_scan,
    selective_scan,
    selective_scan_ref,
)


def scan_inputs(batch: int, d_inner: int, n_state: int, length: int, seed: int = 0) -> dict:
    """Random inputs at Mamba-like scales: delta ~ softplus(N(-2, 1)), A = -(1..N) jittered."""
    g = torch.Generator().manual_seed(seed)
    return {
        "u": torch.randn(batch, d_inner, length, generator=g),
        "delta": torch.randn(batch, d_inner, length, generator=g) - 2.0,
        "A": -torch.arange(1.0, n_state + 1).repeat(d_inner, 1)
        * torch.rand(d_inner, 1, generator=g)
        * 2,
        "B": torch.randn(batch, n_state, length, generator=g),
        "C": torch.randn(batch, n_state, length, generator=g),
        "D": torch.randn(d_inner, generator=g),
        "z": torch.randn(batch, d_inner, length, generator=g),
        "delta_bias": torch.randn(d_inner, generator=g) * 0.5,
    }


@pytest.mark.parametrize("length", [1, 5, 64, 200, 1000])
@pytest.mark.parametrize(
    "variant",
    [
        {"delta_softplus": True},
        {"delta_softplus": True, "D": True, "z": True, "delta_bias": True},
        {"delta_softplus": False, "D": True},
        {"delta_softplus": True, "z": True, "delta_bias": True},
    ],
)
def test_parallel_scan_matches_sequential_reference(length, variant):
    inputs = scan_inputs(2, 6, 4, length)
    if not variant["delta_softplus"]:
        inputs["delta"] = inputs["delta"].exp()  # positive steps without softplus
    args = {k: inputs[k] for k in ("u", "delta", "A", "B", "C")}
    args.update({k: inputs[k] for k in ("D", "z", "delta_bias") if variant.get(k)})
    expected = selective_scan_ref(**args, delta_softplus=variant["delta_softplus"])
    result = selective_scan(**args, delta_softplus=variant["delta_softplus"])
    assert result.shape == (2, 6, length) and result.dtype == torch.float32
    torch.testing.assert_close(result, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("chunk_size", [1, 3, 16, 64, 4096])
def test_any_chunk_size_gives_the_same_scan(chunk_size):
    inputs = scan_inputs(2, 3, 4, 333, seed=1)
    expected = selective_scan_ref(**inputs, delta_softplus=True)
    result = selective_scan(**inputs, delta_softplus=True, chunk_size=chunk_size)
    torch.testing.assert_close(result, expected, atol=1e-5, rtol=1e-5)


def test_scan_is_stable_for_huge_steps():
    inputs = scan_inputs(1, 4, 16, 300)
    inputs["delta"] = inputs["delta"].abs() * 1e4  # exp(delta * A) underflows to 0, never overflows
    args = {k: inputs[k] for k in ("u", "delta", "A", "B", "C")}
    result = selective_scan(**args)
    assert torch.isfinite(result).all()
    torch.testing.assert_close(result, selective_scan_ref(**args), atol=1e-3, rtol=1e-4)


def test_scan_gradients_match_reference():
    inputs = scan_inputs(1, 3, 4, 70)
    leaves = {k: v.clone().requires_grad_(True) for k, v in inputs.items()}
    grads = []
    for scan in (selective_scan, selective_scan_ref):
        out = scan(**leaves, delta_softplus=True)
        grads.append(torch.autograd.grad(out.sum(), list(leaves.values())))
    for parallel, reference in zip(*grads, strict=True):
        torch.testing.assert_close(parallel, reference, atol=1e-4, rtol=1e-4)


def test_mamba_block_shapes_gradients_and_causality():
    torch.manual_seed(0)
    block = MambaBlock(16, d_state=4, backend="torch")
    u = torch.randn(2, 12, 16, requires_grad=True)
    out = block(u)
    assert out.shape == u.shape
    out.pow(2).mean().backward()
    for name, param in block.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    future_changed = u.detach().clone()
    future_changed[:, 7:] = torch.randn(2, 5, 16)
    torch.testing.assert_close(block(future_changed)[:, :7], out[:, :7])
    assert not torch.allclose(block(future_changed)[:, 7:], out[:, 7:])


def test_mamba_block_runs_under_bf16_autocast():
    torch.manual_seed(0)
    block = MambaBlock(16, d_state=4, backend="auto")
    u = torch.randn(2, 20, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = block(u)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), block(u), atol=0.1, rtol=0.05)


def test_mamba_block_init_follows_mamba():
    block = MambaBlock(32, d_state=8, expand=2)
    torch.testing.assert_close(-torch.exp(block.A_log), -torch.arange(1.0, 9).repeat(64, 1))
    dt = torch.nn.functional.softplus(block.dt_proj.bias)
    assert dt.min() >= 1e-4 and dt.max() <= 0.1 + 1e-6
    assert block.A_log._no_weight_decay and block.D._no_weight_decay


@pytest.mark.skipif(cuda_selective_scan() is not None, reason="mamba-ssm is installed")
def test_cuda_backend_without_mamba_ssm_is_a_clear_error():
    with pytest.raises(RuntimeError, match="mamba-ssm"):
        MambaBlock(16, backend="cuda")


needs_mamba_gpu = pytest.mark.skipif(
    not torch.cuda.is_available() or cuda_selective_scan() is None,
    reason="needs CUDA and mamba-ssm",
)


@pytest.mark.gpu
@needs_mamba_gpu
def test_mamba_ssm_kernel_matches_torch_scan():
    inputs = {k: v.cuda() for k, v in scan_inputs(2, 64, 16, 1000).items()}
    expected = selective_scan(**inputs, delta_softplus=True)
    result = cuda_selective_scan()(**inputs, delta_softplus=True)
    torch.testing.assert_close(result, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.gpu
@needs_mamba_gpu
def test_mamba_block_cuda_and_torch_backends_agree():
    torch.manual_seed(0)
    cuda_block = MambaBlock(64, backend="cuda").cuda()
    torch_block = MambaBlock(64, backend="torch").cuda()
    torch_block.load_state_dict(cuda_block.state_dict())
    u = torch.randn(4, 300, 64, device="cuda")
    torch.testing.assert_close(cuda_block(u), torch_block(u), atol=1e-4, rtol=1e-4)
