"""ConditionalFlow: its log-determinant is the autograd Jacobian's, its density integrates to one, scoring its own
draw reads the cache, the IAF order reverses between layers."""

import copy

import pytest
import torch
from pyro.distributions.transforms import AffineAutoregressive, SplineAutoregressive
from torch.distributions.transforms import AffineTransform

from pyro_diffvi.nn import ConditionalFlow


def _perturbed_flow(
    kind: str, dim: int, context_dim: int, scale: float = 0.2, num_transforms: int = 4
) -> ConditionalFlow:
    """A flow far from its (near-identity) initialization, in float64."""
    flow = ConditionalFlow(dim, context_dim=context_dim, num_transforms=num_transforms, flow=kind).double()
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(scale * torch.randn_like(p))
    return flow


@pytest.mark.parametrize("context_dim", [4, 0])
@pytest.mark.parametrize("kind", ["iaf", "spline"])
def test_log_det_equals_autograd_jacobian(kind, context_dim):
    # Ground truth: log|det J| of the whole map eps -> z from torch.autograd.functional.jacobian.
    flow = _perturbed_flow(kind, dim=3, context_dim=context_dim)
    for _ in range(4):
        context = torch.randn(4, dtype=torch.float64) if context_dim else None
        eps = torch.randn(3, dtype=torch.float64)
        transforms = flow.transforms(context)

        def f(u):
            for t in transforms:
                u = t(u)
            return u

        jac = torch.autograd.functional.jacobian(f, eps)
        expected = torch.linalg.slogdet(jac).logabsdet
        u, log_det = eps, 0.0
        for t in transforms:
            y = t(u)
            log_det = log_det + t.log_abs_det_jacobian(u, y)
            u = y
        assert torch.allclose(log_det, expected, atol=1e-8), (kind, log_det, expected)


@pytest.mark.parametrize("context_dim", [3, 0])
@pytest.mark.parametrize("kind", ["iaf", "spline"])
def test_density_integrates_to_one(kind, context_dim):
    # Ground truth: a normalized density on R^2; 2-D quadrature on a 121^2 grid covering its mass.
    flow = _perturbed_flow(kind, dim=2, context_dim=context_dim, scale=0.1, num_transforms=2)
    if not context_dim:  # Pyro's unconditional stable-IAF inverse builds float32 zeros: stay in float32
        flow = flow.float()
    context = torch.randn(3, dtype=torch.float64) if context_dim else None
    q = flow(context)
    z = q.sample((2000,))
    lo, hi = z.min(0).values - 1.0, z.max(0).values + 1.0
    g0, g1 = (torch.linspace(lo[i], hi[i], 121, dtype=torch.float64) for i in range(2))
    grid = torch.stack(torch.meshgrid(g0, g1, indexing="ij"), -1).reshape(-1, 2).to(z.dtype)
    with torch.no_grad():
        q_grid = flow(context.expand(grid.shape[0], 3)) if context_dim else flow()
        log_q = q_grid.log_prob(grid)  # inverse passes (arbitrary values)
    mass = log_q.exp().sum() * (g0[1] - g0[0]) * (g1[1] - g1[0])
    assert abs(mass.item() - 1.0) < 0.01, mass


@pytest.mark.parametrize("kind", ["iaf", "spline"])
def test_log_prob_of_own_sample_uses_cache_and_is_exact(kind, monkeypatch):
    flow = _perturbed_flow(kind, dim=3, context_dim=4, scale=0.05)
    q = flow(torch.randn(5, 4, dtype=torch.float64))
    z = q.rsample()
    with monkeypatch.context() as patch:
        for cls in (AffineAutoregressive, SplineAutoregressive, AffineTransform):
            patch.setattr(cls, "_inverse", lambda self, y: pytest.fail("inverse pass in the hot path"))
        cached = q.log_prob(z)
    reference = q.log_prob(z.clone())  # a fresh tensor: forces the exact inverse pass
    assert torch.allclose(cached, reference, atol=1e-8)


def test_iaf_layers_reverse_order_and_masks_are_buffers():
    flow = ConditionalFlow(3, context_dim=4, num_transforms=4, flow="iaf")
    perms = [layer.nn.permutation.tolist() for layer in flow.layers]
    assert perms == [[0, 1, 2], [2, 1, 0], [0, 1, 2], [2, 1, 0]]
    buffers = dict(flow.named_buffers())
    assert sum(name.endswith("mask") for name in buffers) >= 4 * 3  # 3 masked layers per MADE
    flow = flow.to(torch.float64)
    assert all(b.dtype == torch.float64 for n, b in flow.named_buffers() if n.endswith("mask"))


def test_context_width_is_checked():
    flow = ConditionalFlow(2, context_dim=5)
    with pytest.raises(ValueError, match="context_dim=5"):
        flow(torch.randn(3, 4))


@pytest.mark.parametrize("context_dim", [3, 0])
def test_plain_affine_iaf_log_det_equals_autograd_jacobian(context_dim):
    flow = ConditionalFlow(3, context_dim=context_dim, num_transforms=3, flow="iaf", stable=False).double()
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.2 * torch.randn_like(p))
    context = torch.randn(3, dtype=torch.float64) if context_dim else None
    transforms = flow.transforms(context)
    eps = torch.randn(3, dtype=torch.float64)

    def f(u):
        for t in transforms:
            u = t(u)
        return u

    expected = torch.linalg.slogdet(torch.autograd.functional.jacobian(f, eps)).logabsdet
    u, log_det = eps, 0.0
    for t in transforms:
        y = t(u)
        log_det = log_det + t.log_abs_det_jacobian(u, y)
        u = y
    assert torch.allclose(log_det, expected, atol=1e-8)


def test_clear_cache_drops_the_graph_tensors_and_keeps_the_density():
    flow = ConditionalFlow(2, context_dim=0, num_transforms=2, hidden_dims=(8,))
    q = flow()
    z = q.rsample((5,))
    log_q = q.log_prob(z)  # from the caches of this draw
    flow.clear_cache()
    twin = copy.deepcopy(flow)  # the cached graph tensors refused deepcopy
    assert torch.allclose(twin().log_prob(z.detach()), log_q.detach(), atol=1e-5)  # by inversion: the same density
