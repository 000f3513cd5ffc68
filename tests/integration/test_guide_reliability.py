"""Saving, resuming and bad input for every guide: pickling, param-store resume, checkpoint equality,
dimension-changing constraints, user-given subsample indices, dtypes and clear errors."""

import copy
import gc
import io
import math
import pickle
import weakref

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

from pyro_diffvi.guides import DiffusionGuide, FlowGuide, GaussianGuide, HierarchicalGuide, PathIntegralGuide
from pyro_diffvi.infer import DDVI_ELBO

A = torch.tensor([[1.0, 0.5], [-0.5, 1.0], [0.3, -0.2]])
SMALL = {"encoder_hidden_dims": (16,)}
GUIDES = {
    "gaussian": lambda model, **kw: GaussianGuide(model, "z", "x", **SMALL, **kw),
    "flow": lambda model, **kw: FlowGuide(model, "z", "x", **SMALL, **kw),
    "hierarchical": lambda model, **kw: HierarchicalGuide(model, "z", "x", **SMALL, **kw),
    "diffusion": lambda model, **kw: DiffusionGuide(
        model, "z", "x", num_steps=3, denoiser_hidden_dims=(16,), **SMALL, **kw
    ),
    "pis": lambda model, **kw: PathIntegralGuide(model, "z", "x", num_steps=3, drift_hidden_dims=(16,), **SMALL, **kw),
}


def model(x):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z @ A.T.to(x), 0.5).to_event(1), obs=x)


def data(n=8, seed=7):
    return torch.randn(n, 3, generator=torch.Generator().manual_seed(seed))


def objective(name):
    return DDVI_ELBO() if name == "diffusion" else Trace_ELBO()


def params_of(guide):
    return {k: v.detach().clone() for k, v in guide.state_dict().items() if torch.is_tensor(v)}


# ---- saving whole guides ------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(GUIDES))
def test_trained_guide_pickles_deep_copies_and_torch_saves_whole(name):
    x = data()
    guide = GUIDES[name](model)
    svi = SVI(model, guide, Adam({"lr": 1e-2}), objective(name))
    for _ in range(3):
        svi.step(x)
    buffer = io.BytesIO()
    torch.save(guide, buffer)
    buffer.seek(0)
    copies = {
        "torch.save": torch.load(buffer, weights_only=False),
        "pickle": pickle.loads(pickle.dumps(guide)),
        "deepcopy": copy.deepcopy(guide),
    }
    torch.manual_seed(0)
    expected = guide(x)["z"]
    for how, other in copies.items():
        assert other.model is model, how
        assert all(torch.equal(a, b) for a, b in zip(params_of(other).values(), params_of(guide).values())), how
        torch.manual_seed(0)
        with pytest.warns(RuntimeWarning, match="shares its param-store names"):  # the original is alive
            assert torch.equal(other(x)["z"], expected), how
    pyro.clear_param_store()  # as in a new process: the loaded guide trains on its own
    other = copies["torch.save"]
    before = {k: v.detach().clone() for k, v in other.named_parameters()}
    SVI(model, other, Adam({"lr": 1e-2}), objective(name)).step(x)
    unchanged = [k for k, v in other.named_parameters() if torch.equal(before[k], v)]
    assert not unchanged, unchanged


def test_a_guide_keeps_neither_the_prototype_trace_nor_the_first_batch():
    guide = GaussianGuide(model, "z", "x", **SMALL)
    x = data()
    ref = weakref.ref(x)
    guide(x)
    del x
    gc.collect()
    assert guide.prototype_trace is None
    assert ref() is None  # the first batch (and any graph through it) was released


def test_a_model_that_cannot_be_pickled_is_left_out_with_a_warning():
    scale = 0.5

    def local_model(x):  # a closure: not picklable
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ A.T, scale).to_event(1), obs=x)

    guide = GaussianGuide(local_model, "z", "x", **SMALL)
    guide(data())
    with pytest.warns(RuntimeWarning, match="set guide.model = model"):
        loaded = pickle.loads(pickle.dumps(guide))
    assert loaded.model is None
    with pytest.raises(RuntimeError, match="unpickled without its model"):
        loaded(data())
    loaded.model = local_model
    with pytest.warns(RuntimeWarning, match="shares its param-store names"):
        assert loaded(data())["z"].shape == (8, 2)
    assert copy.deepcopy(guide).model is local_model  # a deep copy shares the model


# ---- resuming -------------------------------------------------------------------------------------


def _run(name, steps, state=None):
    """Fresh objects (as in a new process), optionally restored from ``state``; ``steps`` SVI steps."""
    pyro.clear_param_store()
    torch.manual_seed(0)
    x = data()
    guide = GUIDES[name](model)
    optim = Adam({"lr": 1e-2})
    svi = SVI(model, guide, optim, DDVI_ELBO(warmup_steps=2) if name == "diffusion" else Trace_ELBO())
    guide.setup(x)
    if state is not None:
        guide.load_state_dict(state["guide"])
        optim.set_state(state["optim"])
        torch.set_rng_state(state["rng"])
    for _ in range(steps):
        svi.step(x)
    return guide, {"guide": copy.deepcopy(guide.state_dict()), "optim": optim.get_state(), "rng": torch.get_rng_state()}


@pytest.mark.parametrize("name", list(GUIDES))
def test_interrupted_and_resumed_run_equals_the_uninterrupted_one_bit_for_bit(name):
    _, whole = _run(name, 4)
    _, first = _run(name, 1)  # for the diffusion guide: stops inside the warm-up
    _, resumed = _run(name, 3, state=first)
    assert resumed["guide"].keys() == whole["guide"].keys()
    for key, value in whole["guide"].items():
        if torch.is_tensor(value):
            assert torch.equal(resumed["guide"][key], value), key
        else:
            assert resumed["guide"][key] == value, key


def test_resume_through_pyro_s_param_store_save_and_load(tmp_path):
    guide, whole = _run("diffusion", 4)
    guide, _ = _run("diffusion", 1)
    pyro.get_param_store().save(tmp_path / "params.pt")
    state = {"rng": torch.get_rng_state(), "steps": guide.training_steps}
    optim_state = None
    # a fresh process: new objects, the store loaded *before* the guide's first call
    pyro.clear_param_store()
    x = data()
    guide = GUIDES["diffusion"](model)
    pyro.get_param_store().load(tmp_path / "params.pt")
    guide.setup(x)
    guide.training_steps = state["steps"]
    for _, param in guide.named_parameters():
        assert pyro.get_param_store().get_param(pyro.get_param_store().param_name(param)) is param
    before = {k: v.detach().clone() for k, v in guide.named_parameters()}
    svi = SVI(model, guide, Adam({"lr": 1e-2}), DDVI_ELBO(warmup_steps=2))
    torch.set_rng_state(state["rng"])
    svi.step(x)
    unchanged = [k for k, v in guide.named_parameters() if torch.equal(before[k], v)]
    assert not unchanged, unchanged  # every parameter trains (none did before)
    del optim_state


def test_loading_the_store_into_a_built_guide_adopts_the_loaded_values(tmp_path):
    x = data()
    guide = GaussianGuide(model, "z", "x", **SMALL)
    svi = SVI(model, guide, Adam({"lr": 1e-2}), Trace_ELBO())
    svi.step(x)
    pyro.get_param_store().save(tmp_path / "params.pt")
    saved = params_of(guide)
    svi.step(x)
    pyro.get_param_store().load(tmp_path / "params.pt")  # roll back
    guide(x)
    assert all(torch.equal(a, b) for a, b in zip(params_of(guide).values(), saved.values()))
    svi.step(x)
    assert not torch.equal(params_of(guide)["heads.0.weight"], saved["heads.0.weight"])


def test_a_second_guide_of_the_same_name_over_a_live_one_raises():
    x = data()
    first = GaussianGuide(model, "z", "x", **SMALL)
    first(x)
    second = GaussianGuide(model, "z", "x", **SMALL)
    with pytest.raises(ValueError, match="another guide of this name"):
        second(x)
    pyro.clear_param_store()
    second(x)  # a cleared store: the second guide is built ...
    with pytest.raises(ValueError, match="another guide of this name"):
        first(x)  # ... and the first one, still in use, cannot silently take its place


def test_load_state_dict_before_setup_says_what_to_do():
    guide = GaussianGuide(model, "z", "x", **SMALL)
    guide.setup(data())
    state = guide.state_dict()
    pyro.clear_param_store()
    fresh = GaussianGuide(model, "z", "x", **SMALL)
    with pytest.raises(RuntimeError, match=r"guide.setup\(\*model_args\)"):
        fresh.load_state_dict(state)
    fresh.setup(data())
    fresh.load_state_dict(state)


# ---- model structures ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gaussian", "flow", "diffusion"])
def test_simplex_latent_has_the_model_s_shape_and_a_normalized_density(name):
    """A Dirichlet latent of event shape (2,) is guided in R^1 and mapped by stick-breaking; where the guide
    has a density (not the diffusion guide's auxiliary-variable posterior) it integrates to one."""
    concentration = torch.tensor([2.0, 3.0])

    def dirichlet_model(x):
        with pyro.plate("data", x.shape[0]):
            p = pyro.sample("z", dist.Dirichlet(concentration))
            pyro.sample("x", dist.Binomial(10, p[..., :1]).to_event(1), obs=x)

    x = torch.tensor([[3.0], [7.0], [5.0]])
    guide = GUIDES[name](dirichlet_model)
    z = guide(x)["z"]
    assert z.shape == (3, 2) and torch.allclose(z.sum(-1), torch.ones(3))
    assert math.isfinite(Trace_ELBO().loss(dirichlet_model, guide, x))
    if name == "diffusion":
        return
    # the guide's density on the simplex integrates to one over p_1 in (0, 1) (midpoint rule)
    n = 20000
    p1 = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    fn = poutine.trace(guide).get_trace(x).nodes["z"]["fn"]
    points = torch.stack([p1, 1 - p1], -1).float()[:, None].expand(n, 3, 2)
    mass = (fn.log_prob(points).double().exp().sum(0) / n).detach()
    assert torch.allclose(mass, torch.ones(3, dtype=torch.float64), atol=2e-3), mass


def subsampled_model(x, idx):
    with pyro.plate("data", 50, subsample=idx):
        z = pyro.sample("z", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z @ A.T, 0.5).to_event(1), obs=x[idx])


def test_user_given_subsample_indices_are_the_guide_s_too():
    x, idx = data(50), torch.tensor([3, 17, 40, 41])
    create_plates = lambda x, idx: pyro.plate("data", 50, subsample=idx)  # noqa: E731
    guide = GaussianGuide(subsampled_model, "z", "x", create_plates=create_plates, **SMALL)
    trace = poutine.trace(guide).get_trace(x, idx)
    assert trace.nodes["z"]["value"].shape == (4, 2)
    assert trace.nodes["z"]["scale"] == pytest.approx(50 / 4)
    assert torch.equal(trace.nodes["data"]["value"], idx)
    expected = guide.posterior("z", guide.context(x[idx])).mean
    assert torch.equal(trace.nodes["z"]["fn"].mean, expected)
    svi = SVI(subsampled_model, guide, Adam({"lr": 1e-2}), Trace_ELBO())
    assert math.isfinite(svi.step(x, idx))


def test_model_given_subsample_indices_without_create_plates_are_refused_at_set_up():
    x, idx = data(50), torch.tensor([3, 17, 40, 41])
    guide = GaussianGuide(subsampled_model, "z", "x", **SMALL)
    with pytest.raises(ValueError, match=r"subsample indices to plate\(s\) \['data'\].*create_plates="):
        guide(x, idx)
    assert not guide._is_setup


def test_a_latent_outside_the_observations_plates_is_refused_with_the_plates_named():
    def grouped(x):
        with pyro.plate("groups", x.shape[0], dim=-2):
            z = pyro.sample("z", dist.Normal(x.new_zeros(1, 2), 1.0).to_event(1))
            with pyro.plate("obs", x.shape[1], dim=-1):
                pyro.sample("x", dist.Normal(z @ A.T, 0.5).to_event(1), obs=x)

    with pytest.raises(ValueError, match=r"plate\(s\) \['obs'\] that 'z' is not in"):
        GaussianGuide(grouped, "z", "x", **SMALL)(torch.randn(4, 5, 3))


def test_a_bad_first_batch_leaves_nothing_behind_and_later_bad_batches_are_named():
    guide = GaussianGuide(model, "z", "x", **SMALL)
    with pytest.raises((ValueError, RuntimeError)):
        guide(torch.randn(8, 5))  # wrong feature width: the model's likelihood refuses it at set-up
    assert not guide._is_setup and len(pyro.get_param_store()) == 0
    guide(data())  # a correct batch builds the guide
    with pytest.raises(ValueError, match=r"observed site 'x' has shape \(8, 5\).*event shape \(3,\)"):
        guide(torch.randn(8, 5))
    bad = data()
    bad[2, 1] = math.nan
    with pytest.raises(ValueError, match="observed site 'x' contains 1 non-finite"):
        guide(bad)


def test_the_guide_takes_its_dtype_from_the_model_not_the_data():
    def float32_model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))  # float32 prior and decoder
            pyro.sample("x", dist.Normal(z @ A.T, 0.5).to_event(1), obs=x)

    x = data().double()
    guide = GaussianGuide(float32_model, "z", "x", **SMALL)
    assert guide(x)["z"].dtype == torch.float32
    svi = SVI(float32_model, guide, Adam({"lr": 1e-2}), Trace_ELBO())
    assert math.isfinite(svi.step(x))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_steps": True}, "num_steps must be an integer"),
        ({"num_steps": 2.0}, "num_steps must be an integer"),
        ({"denoiser_hidden_dims": (0,)}, "each width of denoiser_hidden_dims"),
        ({"denoiser_hidden_dims": (16.5,)}, "each width of denoiser_hidden_dims"),
        ({"encoder_hidden_dims": (8.0,)}, "each width of encoder_hidden_dims"),
        ({"time_dim": 0}, "time_dim must be an integer"),
        ({"schedule": [0.1, 1 - 1e-10, 0.2]}, r"betas must lie in \(0, 1\) in torch.float32"),
    ],
)
def test_diffusion_guide_arguments_are_checked(kwargs, match):
    kwargs = {"num_steps": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        DiffusionGuide(model, "z", "x", **kwargs)


def test_numpy_input_is_refused_with_the_fix():
    with pytest.raises(TypeError, match=r"torch.as_tensor"):
        GaussianGuide(model, "z", "x", **SMALL)(np.zeros((4, 3), dtype=np.float32))
