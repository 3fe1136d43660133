"""Layers, initialisation, checkpoints and optimizers."""
from __future__ import annotations

import os
import re

import numpy as np
import pytest

from minigrad import functions as F
from minigrad import nn, optim
from minigrad.init import as_generator, glorot_normal, glorot_uniform
from minigrad.tensor import Tensor


def small_model(seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return nn.Sequential(nn.Linear(3, 4, rng, dtype=dtype), nn.Tanh(),
                         nn.Linear(4, 2, rng, dtype=dtype))


def param(values):
    # A copy: Parameter wraps the array it is given, and optimizers update it in place.
    return nn.Parameter(np.array(values, dtype=np.float64))


# ---------------------------------------------------------------------- layers
def test_linear_shapes_and_parameter_names():
    layer = nn.Linear(3, 5, np.random.default_rng(0))
    assert [name for name, _ in layer.named_parameters()] == ["weight", "bias"]
    assert layer.weight.shape == (3, 5) and layer.bias.shape == (5,)
    assert layer.weight.dtype == np.float32 and layer.bias.dtype == np.float32
    assert all(p.requires_grad for p in layer.parameters())
    np.testing.assert_array_equal(layer.bias.data, np.zeros(5))
    out = layer(Tensor(np.ones((2, 3), np.float32)))
    assert out.shape == (2, 5) and out.dtype == np.float32


def test_linear_output_is_x_at_w_plus_b():
    rng = np.random.default_rng(1)
    layer = nn.Linear(3, 2, rng, dtype=np.float64)
    layer.bias.data[:] = [0.5, -1.0]
    x = rng.standard_normal((4, 3))
    np.testing.assert_allclose(layer(Tensor(x)).data, x @ layer.weight.data + [0.5, -1.0],
                               rtol=1e-14)


def test_linear_without_bias():
    layer = nn.Linear(3, 2, 0, bias=False)
    assert [name for name, _ in layer.named_parameters()] == ["weight"]
    assert layer(Tensor(np.ones((1, 3), np.float32))).shape == (1, 2)


def test_linear_with_wrong_input_width_names_the_shapes():
    layer = nn.Linear(4, 3, np.random.default_rng(0))
    with pytest.raises(ValueError, match=re.escape("Linear(4, 3)") + ".*"
                       + re.escape("(2, 5)") + ".*must be 4"):
        layer(Tensor(np.ones((2, 5), np.float32)))


def test_layers_accept_an_integer_seed_and_reject_other_rngs():
    a = nn.Linear(3, 2, 7)
    b = nn.Linear(3, 2, np.random.default_rng(7))
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    with pytest.raises(TypeError, match="Generator"):
        nn.Linear(3, 2, rng=np.random.RandomState(0))
    with pytest.raises(TypeError, match="Generator"):
        as_generator(True)


@pytest.mark.parametrize("stride, padding, out_hw", [(1, 0, 4), (1, 1, 6), (2, 1, 3)])
def test_conv2d_layer_shapes(stride, padding, out_hw):
    conv = nn.Conv2d(2, 3, 3, np.random.default_rng(0), stride=stride, padding=padding)
    assert [n for n, _ in conv.named_parameters()] == ["weight", "bias"]
    assert conv.weight.shape == (3, 2, 3, 3) and conv.bias.shape == (3,)
    out = conv(Tensor(np.ones((2, 2, 6, 6), np.float32)))
    assert out.shape == (2, 3, out_hw, out_hw)
    assert out.dtype == np.float32


def test_conv2d_layer_with_wrong_channels_names_the_shapes():
    conv = nn.Conv2d(2, 3, 3, np.random.default_rng(0))
    with pytest.raises(ValueError, match=re.escape("(1, 1, 5, 5)") + ".*"
                       + re.escape("(3, 2, 3, 3)")):
        conv(Tensor(np.ones((1, 1, 5, 5), np.float32)))


def test_maxpool2d_and_flatten_shapes():
    x = Tensor(np.arange(2 * 3 * 4 * 6, dtype=np.float32).reshape(2, 3, 4, 6))
    pooled = nn.MaxPool2d(2)(x)
    assert pooled.shape == (2, 3, 2, 3)
    np.testing.assert_array_equal(pooled.data[0, 0], [[7, 9, 11], [19, 21, 23]])
    assert nn.Flatten()(pooled).shape == (2, 18)
    assert list(nn.MaxPool2d(2).named_parameters()) == []
    assert list(nn.Flatten().named_parameters()) == []


def test_sequential_cnn_shapes_and_parameter_order():
    rng = np.random.default_rng(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, rng, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(4 * 4 * 4, 10, rng),
    )
    names = [name for name, _ in model.named_parameters()]
    assert names == ["0.weight", "0.bias", "4.weight", "4.bias"]
    assert [p.shape for p in model.parameters()] == [(4, 1, 3, 3), (4,), (64, 10), (10,)]
    assert len(model) == 5 and isinstance(model[2], nn.MaxPool2d)
    out = model(Tensor(np.random.default_rng(1).standard_normal((2, 1, 8, 8))
                       .astype(np.float32)))
    assert out.shape == (2, 10)
    F.sum(out).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, name


def test_nested_modules_parameter_names():
    rng = np.random.default_rng(0)
    inner = nn.Sequential(nn.Linear(2, 3, rng), nn.Sigmoid())
    model = nn.Sequential(inner, nn.Linear(3, 1, rng))
    assert [n for n, _ in model.named_parameters()] == [
        "0.0.weight", "0.0.bias", "1.weight", "1.bias"]


def test_sequential_rejects_non_modules():
    with pytest.raises(TypeError, match="layer 1 is a function"):
        nn.Sequential(nn.ReLU(), F.relu)


def test_module_zero_grad_clears_all_gradients():
    model = small_model()
    F.sum(model(Tensor(np.ones((2, 3), np.float32)))).backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


# ---------------------------------------------------------------------- initialisation
def test_glorot_uniform_bounds_and_variance_on_a_large_matrix():
    fan_in, fan_out = 400, 600
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    w = glorot_uniform((fan_in, fan_out), np.random.default_rng(0), dtype=np.float64)
    assert w.shape == (fan_in, fan_out) and w.dtype == np.float64
    assert np.abs(w).max() <= limit
    # n = 240,000 samples of U(-a, a). The largest |w| misses the top 0.1% of [0, a] with
    # probability 0.999^n ~ e^-240: it must come close to the bound.
    assert np.abs(w).max() > 0.999 * limit
    # Var U(-a, a) = a^2/3 = 2/(fan_in + fan_out). The sample mean has sd a/sqrt(3n) ~
    # 1.2e-4 a, and the sample variance has relative sd sqrt(Var(w^2)) / (a^2/3 sqrt(n)) =
    # sqrt(4/45) * 3 / sqrt(n) ~ 1.8e-3. The tolerances below are >= 5 sd, while a wrong
    # scale (e.g. using only fan_in, which changes the variance by 60%) is far outside.
    assert abs(w.mean()) < 6e-4 * limit
    np.testing.assert_allclose(w.var(), 2.0 / (fan_in + fan_out), rtol=1e-2)


def test_glorot_uniform_float32_and_conv_fans():
    shape = (16, 8, 3, 3)  # fan_in = 8*9 = 72, fan_out = 16*9 = 144
    limit = np.sqrt(6.0 / (72 + 144))
    w = glorot_uniform(shape, np.random.default_rng(1))
    assert w.dtype == np.float32 and w.shape == shape
    # Rounding to float32 is monotonic, so |w| <= a becomes |w| <= float32(a).
    assert np.abs(w).max() <= np.float32(limit)
    assert np.abs(w).max() > 0.99 * limit  # 1152 samples: misses with prob 0.99^1152 ~ 1e-5
    with pytest.raises(ValueError, match=re.escape("(2, 3, 4)")):
        glorot_uniform((2, 3, 4), np.random.default_rng(0))


def test_glorot_normal_variance():
    w = glorot_normal((400, 600), np.random.default_rng(2), dtype=np.float64)
    # Relative sd of the sample variance of a normal: sqrt(2/n) ~ 2.9e-3; rtol 1.5e-2 is 5 sd.
    np.testing.assert_allclose(w.var(), 2.0 / 1000, rtol=1.5e-2)


def test_same_seed_gives_same_weights():
    a, b = small_model(seed=3), small_model(seed=3)
    for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert na == nb
        np.testing.assert_array_equal(pa.data, pb.data)
    assert not np.array_equal(small_model(seed=4)[0].weight.data, a[0].weight.data)


# ---------------------------------------------------------------------- checkpoints
def test_state_dict_round_trip_through_save_and_load(tmp_path):
    model = small_model(seed=0)
    path = tmp_path / "model.npz"
    model.save(path)
    other = small_model(seed=1)
    assert not np.array_equal(other[0].weight.data, model[0].weight.data)
    other.load(path)
    saved = model.state_dict()
    loaded = other.state_dict()
    assert list(loaded) == list(saved) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    for name in saved:
        np.testing.assert_array_equal(loaded[name], saved[name], err_msg=name)
        assert loaded[name].dtype == saved[name].dtype


def test_state_dict_returns_copies():
    model = small_model()
    state = model.state_dict()
    state["0.weight"][:] = 123.0
    assert not np.any(model[0].weight.data == 123.0)


def test_loaded_parameters_do_not_alias_the_given_arrays():
    model = small_model()
    state = {k: v.copy() for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    state["0.bias"][:] = 99.0
    assert not np.any(model[0].bias.data == 99.0)


def test_save_leaves_no_temporary_files(tmp_path):
    model = small_model()
    model.save(tmp_path / "a.npz")
    model.save(tmp_path / "a.npz")  # overwrite
    assert sorted(os.listdir(tmp_path)) == ["a.npz"]


def test_save_requires_npz_suffix(tmp_path):
    with pytest.raises(ValueError, match=r"\.npz"):
        small_model().save(tmp_path / "model.pt")
    assert os.listdir(tmp_path) == []


def test_failed_save_keeps_previous_checkpoint_and_leaves_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    small_model(seed=0).save(path)
    before = path.read_bytes()

    def broken_savez(file, *args, **kwargs):
        file.write(b"half a checkpoint")  # fail midway, after writing something
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        small_model(seed=1).save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]


def _write_checkpoint(path, state):
    np.savez(path, **state)


@pytest.mark.parametrize("problem", ["missing", "unexpected", "misshapen"])
def test_bad_checkpoint_raises_naming_the_array_and_leaves_model_unchanged(tmp_path, problem):
    model = small_model(seed=0)
    state = small_model(seed=1).state_dict()
    if problem == "missing":
        del state["2.bias"]
        pattern = r"missing.*2\.bias"
    elif problem == "unexpected":
        state["3.weight"] = np.zeros((2, 2), np.float32)
        pattern = r"unexpected.*3\.weight"
    else:
        state["0.weight"] = np.zeros((4, 3), np.float32)
        pattern = r"0\.weight.*" + re.escape("(4, 3)") + ".*" + re.escape("(3, 4)")
    path = tmp_path / "bad.npz"
    _write_checkpoint(path, state)
    before = model.state_dict()
    with pytest.raises(ValueError, match=pattern):
        model.load(path)
    after = model.state_dict()
    for name in before:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)


def test_checkpoint_problems_are_reported_together():
    model = small_model()
    state = model.state_dict()
    del state["0.bias"]
    state["extra"] = np.zeros(1)
    state["2.weight"] = np.zeros((1, 1))
    with pytest.raises(ValueError) as info:
        model.load_state_dict(state)
    message = str(info.value)
    for piece in ["0.bias", "extra", "2.weight"]:
        assert piece in message, f"{piece!r} not named in: {message}"


# ---------------------------------------------------------------------- SGD
def test_sgd_one_step_is_p_minus_lr_g():
    p = param([1.0, -2.0, 0.5])
    p.grad = Tensor(np.array([0.3, -0.1, 2.0]))
    optim.SGD([p], lr=0.1).step()
    np.testing.assert_allclose(p.data, [1.0 - 0.03, -2.0 + 0.01, 0.5 - 0.2], rtol=1e-15)


def test_sgd_with_momentum_two_steps_by_hand():
    lr, mu = 0.1, 0.9
    p0 = np.array([1.0, -2.0])
    g1, g2 = np.array([0.5, 1.0]), np.array([-0.25, 2.0])
    p = param(p0)
    opt = optim.SGD([p], lr=lr, momentum=mu)
    p.grad = Tensor(g1)
    opt.step()
    v1 = g1
    p1 = p0 - lr * v1
    np.testing.assert_allclose(p.data, p1, rtol=1e-15)
    p.grad = Tensor(g2)
    opt.step()
    v2 = mu * v1 + g2
    p2 = p1 - lr * v2
    np.testing.assert_allclose(p.data, p2, rtol=1e-15)


def test_sgd_weight_decay_one_step_by_hand():
    p = param([1.0, -2.0])
    p.grad = Tensor(np.array([0.5, 0.5]))
    optim.SGD([p], lr=0.1, weight_decay=0.01).step()
    np.testing.assert_allclose(p.data, [1.0 - 0.1 * (0.5 + 0.01), -2.0 - 0.1 * (0.5 - 0.02)],
                               rtol=1e-15)


def test_sgd_skips_parameters_without_gradient_and_zero_grad_clears():
    a, b = param([1.0]), param([2.0])
    a.grad = Tensor(np.array([1.0]))
    opt = optim.SGD([a, b], lr=0.5)
    opt.step()
    np.testing.assert_array_equal(a.data, [0.5])
    np.testing.assert_array_equal(b.data, [2.0])
    opt.zero_grad()
    assert a.grad is None and b.grad is None


# ---------------------------------------------------------------------- Adam
@pytest.mark.parametrize("eps", [1e-8, 0.1])
def test_adam_matches_algorithm_1_of_kingma_and_ba(eps):
    """Three steps of Kingma & Ba (2015), Algorithm 1, written out by hand.

    eps = 0.1 is comparable to sqrt(v_hat) here, so it also checks where eps enters.
    """
    lr, beta1, beta2 = 0.01, 0.9, 0.999
    grads = [np.array([0.1, -0.2]), np.array([0.05, 0.3]), np.array([-0.4, 0.01])]
    theta = np.array([0.5, -1.0])
    m = np.zeros(2)
    v = np.zeros(2)

    p = param(theta)
    opt = optim.Adam([p], lr=lr, betas=(beta1, beta2), eps=eps)
    for t, g in enumerate(grads, start=1):
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g ** 2
        m_hat = m / (1 - beta1 ** t)
        v_hat = v / (1 - beta2 ** t)
        theta = theta - lr * m_hat / (np.sqrt(v_hat) + eps)

        p.grad = Tensor(g)
        opt.step()
        np.testing.assert_allclose(p.data, theta, rtol=1e-6, err_msg=f"after step {t}")


def test_adam_first_step_moves_each_coordinate_by_about_lr():
    # With bias correction, m_hat / sqrt(v_hat) = sign(g) on step 1, whatever |g| is.
    p = param([0.0, 0.0, 0.0])
    p.grad = Tensor(np.array([1e-3, -5.0, 200.0]))
    optim.Adam([p], lr=0.01).step()
    np.testing.assert_allclose(p.data, [-0.01, 0.01, -0.01], rtol=1e-4)


def test_adam_keeps_float32():
    p = nn.Parameter(np.array([1.0, 2.0], np.float32))
    p.grad = Tensor(np.array([0.5, -0.5], np.float32))
    optim.Adam([p]).step()
    assert p.data.dtype == np.float32


# ---------------------------------------------------------------------- optimizer errors
@pytest.mark.parametrize("cls", [optim.SGD, optim.Adam])
def test_optimizer_rejects_empty_parameter_list(cls):
    with pytest.raises(ValueError, match="empty"):
        cls([], lr=0.1)
    with pytest.raises(ValueError, match="empty"):
        cls(iter([]), lr=0.1)


@pytest.mark.parametrize("cls", [optim.SGD, optim.Adam])
@pytest.mark.parametrize("lr", [0.0, -0.1, float("nan")])
def test_optimizer_rejects_non_positive_learning_rate(cls, lr):
    with pytest.raises(ValueError, match="learning rate must be positive"):
        cls([param([1.0])], lr=lr)


@pytest.mark.parametrize("cls", [optim.SGD, optim.Adam])
def test_optimizer_rejects_parameter_without_requires_grad(cls):
    frozen = Tensor(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"parameter 1 of shape \(2, 3\) does not require"):
        cls([param([1.0]), frozen], lr=0.1)


def test_adam_rejects_bad_betas():
    with pytest.raises(ValueError, match="betas"):
        optim.Adam([param([1.0])], betas=(1.0, 0.999))


# ---------------------------------------------------------------------- training sanity
def test_mlp_reaches_full_training_accuracy_on_separable_data():
    rng = np.random.default_rng(0)
    n = 40
    labels = np.repeat([0, 1], n // 2)
    centers = np.array([[-1.5, -1.0], [1.5, 1.0]])
    x = Tensor(centers[labels] + 0.5 * rng.standard_normal((n, 2)))
    targets = Tensor(np.eye(2)[labels])
    # Separable with a margin: the class-mean direction splits the clouds.
    assert np.all((x.data @ (centers[1] - centers[0]) > 0) == (labels == 1))

    model = nn.Sequential(nn.Linear(2, 8, rng, dtype=np.float64), nn.Tanh(),
                          nn.Linear(8, 2, rng, dtype=np.float64))
    opt = optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for _ in range(100):
        opt.zero_grad()
        loss = F.softmax_cross_entropy(model(x), targets)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    accuracy = np.mean(model(x).data.argmax(axis=1) == labels)
    assert accuracy == 1.0, f"training accuracy {accuracy:.2f}, losses {losses[::20]}"
    assert losses[-1] < 0.5 * losses[0]
