"""RWMOE: FC random-walk graph, multi-step propagation, top-k routing, balance loss, experts."""

import pytest
import torch

from brainlit.models.rwmoe import (
    ExpertMLPs,
    RandomWalkMoE,
    balance_loss,
    correlation,
    fc_transition_matrix,
    knn_sparsify,
    random_walk,
    route,
    transition_matrix,
    walk_encoding,
    windowed_correlation,
)


def test_correlation_matches_corrcoef():
    x = torch.randn(2, 5, 40, dtype=torch.float64)
    expected = torch.stack([torch.corrcoef(sample) for sample in x]).float()
    torch.testing.assert_close(correlation(x), expected, atol=1e-5, rtol=1e-5)


def test_knn_keeps_exactly_k_largest_per_row():
    adjacency = torch.rand(3, 9, 9)
    knn = knn_sparsify(adjacency, 3)
    assert ((knn > 0).sum(-1) == 3).all()
    assert torch.equal(knn.max(-1).values, adjacency.max(-1).values)


def test_transition_matrix_is_row_stochastic_knn_graph():
    torch.manual_seed(0)
    x = torch.randn(4, 12, 50)
    k = 3
    transition = fc_transition_matrix(x, topk=k)
    knn = knn_sparsify(correlation(x).abs() * (1 - torch.eye(12)), k) > 0
    edges = transition > 0
    torch.testing.assert_close(transition.sum(-1), torch.ones(4, 12))
    assert (transition >= 0).all() and (transition.diagonal(dim1=-2, dim2=-1) == 0).all()
    # documented symmetrisation: edge (i, j) iff j is in i's top-k or i in j's top-k
    assert torch.equal(edges, knn | knn.transpose(1, 2))
    assert (edges.sum(-1) >= k).all() and torch.equal(edges, edges.transpose(1, 2))


def test_constant_roi_gets_a_self_loop():
    x = torch.randn(1, 5, 30)
    x[0, 2] = 1.0
    transition = fc_transition_matrix(x, topk=2)
    assert transition[0, 2, 2] == 1.0
    torch.testing.assert_close(transition.sum(-1), torch.ones(1, 5))


def test_random_walk_equals_dense_matrix_powers():
    torch.manual_seed(0)
    transition = fc_transition_matrix(torch.randn(2, 6, 20), topk=2)
    h = torch.randn(2, 6, 3, 4)
    weights = torch.tensor([0.1, 0.2, 0.3, 0.4])
    expected = sum(
        w * torch.einsum("bij,bjpd->bipd", torch.linalg.matrix_power(transition, s), h)
        for s, w in enumerate(weights)
    )
    torch.testing.assert_close(random_walk(h, transition, weights), expected, atol=1e-5, rtol=1e-5)


def test_routing_keeps_exactly_top_k_renormalised():
    logits = torch.randn(5, 7, 8)
    gates, probs, experts = route(logits, top_k=3)
    assert ((gates > 0).sum(-1) == 3).all()
    torch.testing.assert_close(gates.sum(-1), torch.ones(5, 7))
    assert torch.equal(gates.gather(-1, experts) > 0, torch.ones(5, 7, 3, dtype=torch.bool))
    assert torch.equal(experts, logits.topk(3, -1).indices)
    torch.testing.assert_close(probs, logits.softmax(-1))


def test_balance_loss_is_one_when_uniform_and_larger_when_collapsed():
    n_tokens, n_experts = 64, 4
    uniform = torch.full((n_tokens, n_experts), 1 / n_experts)
    spread = torch.arange(n_tokens * 2).view(n_tokens, 2) % n_experts
    assert balance_loss(uniform, spread).item() == pytest.approx(1.0)
    collapsed = torch.zeros(n_tokens, n_experts)
    collapsed[:, 0] = 1.0
    assert balance_loss(
        collapsed, torch.zeros(n_tokens, 1, dtype=torch.long)
    ).item() == pytest.approx(4.0)


def tiny_moe(**kwargs) -> RandomWalkMoE:
    return RandomWalkMoE(
        16, **{"n_experts": 4, "top_k": 2, "graph_topk": 3, "expert_hidden": 8, **kwargs}
    )


@pytest.mark.parametrize("gating", ["spatial", "temporal", "both"])
@pytest.mark.parametrize("walk_weights", ["learnable", "restart"])
def test_moe_shapes_outputs_and_gradients(gating, walk_weights):
    torch.manual_seed(0)
    moe = tiny_moe(gating=gating, walk_weights=walk_weights)
    h = torch.randn(3, 8, 5, 16, requires_grad=True)
    out, aux = moe(h, torch.randn(3, 8, 40))
    assert out.shape == h.shape and aux["roi_expert_weights"].shape == (3, 8, 4)
    torch.testing.assert_close(aux["roi_expert_weights"].sum(-1), torch.ones(3, 8))
    assert aux["balance_loss"].ndim == 0 and aux["balance_loss"].item() > 0
    (out.pow(2).sum() + aux["balance_loss"]).backward()
    assert torch.isfinite(h.grad).all()
    for name, param in moe.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name


def test_gating_modes_share_logits_along_the_documented_axis():
    torch.manual_seed(0)
    walked = torch.randn(2, 6, 5, 16)
    spatial = tiny_moe(gating="spatial").gate_logits(walked)  # same for all patches of a ROI
    temporal = tiny_moe(gating="temporal").gate_logits(walked)  # same for all ROIs of a patch
    assert torch.allclose(spatial, spatial[:, :, :1].expand_as(spatial))
    assert torch.allclose(temporal, temporal[:, :1].expand_as(temporal))
    both = tiny_moe(gating="both")
    expected = (
        both.spatial_gate(walked.mean(2))[:, :, None] + both.temporal_gate(walked.mean(1))[:, None]
    )
    torch.testing.assert_close(both.gate_logits(walked), expected)


def test_uniform_gate_gives_balance_loss_one():
    moe = tiny_moe()
    for gate in (moe.spatial_gate, moe.temporal_gate):
        torch.nn.init.zeros_(gate.weight)
        torch.nn.init.zeros_(gate.bias)
    _, aux = moe(torch.randn(2, 8, 5, 16), torch.randn(2, 8, 40))
    assert aux["balance_loss"].item() == pytest.approx(1.0)


def test_restart_weights_follow_the_restart_form():
    moe = tiny_moe(walk_weights="restart", restart_prob=0.25, walk_steps=3)
    raw = torch.tensor([0.25 * 0.75**s for s in range(4)])
    torch.testing.assert_close(moe.walk_coefficients(), raw / raw.sum())
    assert torch.allclose(tiny_moe().walk_coefficients(), torch.full((4,), 0.25))


def test_gathered_expert_dispatch_equals_dense_mixture():
    torch.manual_seed(0)
    experts = ExpertMLPs(4, 6, 5)
    tokens = torch.randn(30, 6)
    gates, _, chosen = route(torch.randn(30, 4), top_k=2)
    dense = torch.stack(
        [
            torch.nn.functional.gelu(tokens @ experts.w_in[e] + experts.b_in[e]) @ experts.w_out[e]
            + experts.b_out[e]
            for e in range(4)
        ],
        1,
    )  # [N, E, D]
    expected = (gates[..., None] * dense).sum(1)
    torch.testing.assert_close(
        experts(tokens, chosen, gates.gather(-1, chosen)), expected, atol=1e-5, rtol=1e-5
    )


def test_walk_encoding_stacks_the_rows_of_the_transition_powers():
    transition = fc_transition_matrix(torch.randn(2, 5, 40), topk=2)
    encoding = walk_encoding(transition, steps=3)
    assert encoding.shape == (2, 5, 15)
    torch.testing.assert_close(encoding[..., 5:10], transition @ transition)
    torch.testing.assert_close(encoding[..., 10:].sum(-1), torch.ones(2, 5))  # rows of P^3 sum to 1


def test_walk_encoding_lets_the_graph_change_tokens_that_are_identical():
    torch.manual_seed(0)
    moe = RandomWalkMoE(d_model=8, n_experts=2, top_k=1, n_rois=5, walk_steps=2)
    h = torch.ones(1, 5, 3, 8)  # the same token everywhere: only the FC graph differs
    out_a, _ = moe(h, torch.randn(1, 5, 40))
    out_b, _ = moe(h, torch.randn(1, 5, 40))
    assert not torch.allclose(out_a, out_b)
    plain = RandomWalkMoE(d_model=8, n_experts=2, top_k=1, n_rois=5, walk_steps=2,
                          walk_encoding=False, fc_rows=False)
    torch.testing.assert_close(plain(h, torch.randn(1, 5, 40))[0], plain(h, torch.randn(1, 5, 40))[0])


def test_graph_rows_hold_the_signed_correlation_beside_the_walk_rows():
    x = torch.randn(2, 5, 40)
    moe = RandomWalkMoE(d_model=8, n_experts=2, top_k=1, n_rois=5, walk_steps=2)
    transition = fc_transition_matrix(x, moe.graph_topk)
    rows = moe.graph_rows(correlation(x), transition)
    assert rows.shape == (2, 5, 3 * 5)
    torch.testing.assert_close(rows[..., :5], correlation(x))
    assert (rows[..., :5] < 0).any()  # the sign survives, unlike in the transition matrix
    torch.testing.assert_close(rows[..., 5:], walk_encoding(transition, 2))
    fc_only = RandomWalkMoE(d_model=8, n_experts=2, top_k=1, n_rois=5, walk_steps=2, walk_encoding=False)
    torch.testing.assert_close(fc_only.graph_rows(correlation(x), transition), correlation(x))


def test_cohort_graph_is_a_running_mean_of_training_fc_frozen_in_eval():
    moe = RandomWalkMoE(d_model=8, n_experts=2, top_k=1, n_rois=5, walk_steps=2, graph="cohort",
                        graph_momentum=0.5)
    first, second = torch.randn(3, 5, 40), torch.randn(3, 5, 40)
    moe(torch.randn(3, 5, 2, 8), first)
    torch.testing.assert_close(moe.cohort_fc, correlation(first).abs().mean(0))  # first batch sets it
    moe(torch.randn(3, 5, 2, 8), second)
    expected = 0.5 * correlation(first).abs().mean(0) + 0.5 * correlation(second).abs().mean(0)
    torch.testing.assert_close(moe.cohort_fc, expected)

    moe.eval()
    transition = moe.transition(correlation(torch.randn(4, 5, 40)))
    torch.testing.assert_close(moe.cohort_fc, expected)  # eval leaves the running mean alone
    torch.testing.assert_close(transition, transition[:1].expand(4, -1, -1))  # one graph for all
    torch.testing.assert_close(transition.sum(-1), torch.ones(4, 5))
    torch.testing.assert_close(transition[0], transition_matrix(expected[None], moe.graph_topk)[0])


def test_windowed_correlation_is_each_patch_s_centred_window():
    x = torch.randn(2, 5, 40)  # 5 patches of 8 volumes
    fc = windowed_correlation(x, n_patches=5, patch_len=8, window=16)
    assert fc.shape == (2, 5, 5, 5)
    torch.testing.assert_close(fc[:, 2], correlation(x[..., 12:28]))  # centred on volume 20
    torch.testing.assert_close(fc[:, 0], correlation(x[..., :16]))  # shifted inside the run
    torch.testing.assert_close(fc[:, 4], correlation(x[..., 24:]))
    torch.testing.assert_close(windowed_correlation(x, 5, 8, 100)[:, 3], correlation(x))


def test_time_resolved_graph_lets_each_patch_see_only_its_own_window():
    torch.manual_seed(0)
    moe = RandomWalkMoE(d_model=8, n_experts=2, top_k=1, n_rois=5, walk_steps=2, graph_window=8,
                        gating="temporal")  # temporal gates: a patch is routed on its own tokens
    h, x = torch.ones(1, 5, 4, 8), torch.randn(1, 5, 32)
    changed = x.clone()
    changed[..., 24:] = torch.randn(1, 5, 8)  # the last patch's volumes only
    out, moved = moe(h, x)[0], moe(h, changed)[0]
    torch.testing.assert_close(out[:, :, :3], moved[:, :, :3])
    assert not torch.allclose(out[:, :, 3], moved[:, :, 3])
    whole = RandomWalkMoE(d_model=8, n_experts=2, top_k=1, n_rois=5, walk_steps=2, gating="temporal")
    whole.load_state_dict(moe.state_dict())
    assert not torch.allclose(whole(h, changed)[0][:, :, 0], moved[:, :, 0])  # one graph for all


def test_added_time_resolved_graph_starts_as_the_static_module_and_learns_from_its_windows():
    torch.manual_seed(0)
    kwargs = dict(d_model=8, n_experts=2, top_k=1, n_rois=5, walk_steps=2)
    added = RandomWalkMoE(**kwargs, graph_window=8, graph_window_mode="add")
    static = RandomWalkMoE(**kwargs)
    static.load_state_dict(added.state_dict(), strict=False)  # all but the window embedding
    h, x = torch.randn(2, 5, 4, 8), torch.randn(2, 5, 32)
    torch.testing.assert_close(added(h, x)[0], static(h, x)[0])
    added(h, x)[0].square().sum().backward()
    assert added.window_embed.weight.grad.abs().sum() > 0
