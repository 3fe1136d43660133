"""Bad input to the engine: each case raises an error that says what was wrong and how to fix it."""
import numpy as np
import pytest

from minigrad import functions as F
from minigrad import nn, optim
from minigrad.tensor import Tensor


# ---------------------------------------------------------------------- Tensor
@pytest.mark.parametrize("value, shown", [
    (None, "object"),
    ("abc", "<U3"),
    (np.array([1.0, "a"], dtype=object), "object"),
    ([{"a": 1}], "object"),
])
def test_tensor_rejects_non_numeric_data_and_lists_the_allowed_dtypes(value, shown):
    with pytest.raises(TypeError, match=rf"cannot hold an array of dtype {shown}.*allowed dtypes "
                       "are bool, signed and unsigned integers and floats"):
        Tensor(value)


def test_assigning_non_numeric_data_is_rejected_too():
    t = Tensor(np.zeros(2))
    with pytest.raises(TypeError, match="allowed dtypes are bool"):
        t.data = None


# ---------------------------------------------------------------------- Linear and Conv2d
def test_linear_accepts_a_list_as_an_array():
    layer = nn.Linear(2, 3, np.random.default_rng(0))
    out = layer([[1.0, 2.0]])
    expected = layer(Tensor(np.array([[1.0, 2.0]], dtype=np.float32)))
    np.testing.assert_array_equal(out.data, expected.data)


def test_linear_rejects_none_clearly():
    layer = nn.Linear(2, 3, np.random.default_rng(0))
    with pytest.raises(TypeError, match=r"Linear\(2, 3\): the input is None; pass a Tensor"):
        layer(None)


@pytest.mark.parametrize("dtype", [np.float16, np.int64, np.uint8, np.bool_])
def test_integer_and_low_precision_inputs_are_cast_to_the_layer_dtype(dtype):
    layer = nn.Linear(2, 3, np.random.default_rng(0))
    x = np.array([[1, 0]], dtype=dtype)
    out = layer(x)
    assert out.dtype == np.float32
    expected = layer(Tensor(x.astype(np.float32)))
    np.testing.assert_array_equal(out.data, expected.data)


def test_a_float64_input_into_a_float32_layer_raises():
    layer = nn.Linear(2, 3, np.random.default_rng(0))
    with pytest.raises(TypeError, match=r"input of dtype float64 into a layer of dtype float32.*"
                       r"x\.astype\(np\.float32\).*dtype=float64"):
        layer(np.ones((1, 2)))


def test_conv2d_follows_the_same_dtype_rule():
    conv = nn.Conv2d(1, 1, 3, np.random.default_rng(0))
    assert conv(np.ones((1, 1, 4, 4), dtype=np.uint8)).dtype == np.float32
    with pytest.raises(TypeError, match=r"Conv2d\(1, 1, kernel_size=3.*float64 into a layer "
                       "of dtype float32"):
        conv(np.ones((1, 1, 4, 4)))


def test_the_dtype_rule_and_the_weight_layout_are_documented():
    assert "(in, out)" in nn.Linear.__doc__ and "(in_features, out_features)" in nn.Linear.__doc__
    for cls in (nn.Linear, nn.Conv2d):
        assert "lower-precision float" in cls.__doc__


def test_activation_layers_are_classes():
    for cls in (nn.ReLU, nn.Sigmoid, nn.Tanh):
        layer = cls()
        assert isinstance(layer, cls) and isinstance(layer, nn.Module)
    np.testing.assert_array_equal(nn.ReLU()(Tensor(np.array([-1.0, 2.0]))).data, [0.0, 2.0])


# ---------------------------------------------------------------------- cross-entropy
def test_cross_entropy_of_an_empty_batch_is_a_clear_error():
    with pytest.raises(ValueError, match=r"softmax_cross_entropy: the batch is empty \(logits of "
                       r"shape \(0, 3\)\).*skip empty batches"):
        F.softmax_cross_entropy(Tensor(np.zeros((0, 3)), requires_grad=True), np.zeros((0, 3)))
    with pytest.raises(ValueError, match="the batch is empty"):
        F.softmax_cross_entropy(Tensor(np.zeros((0, 3))), np.zeros(0, dtype=int))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_class_indices_give_the_same_loss_and_gradient_as_one_hot_rows(reduction):
    rng = np.random.default_rng(0)
    z = rng.standard_normal((5, 4))
    labels = np.array([0, 3, 1, 1, 2])
    a, b = Tensor(z, requires_grad=True), Tensor(z, requires_grad=True)
    la = F.softmax_cross_entropy(a, labels, reduction=reduction)
    lb = F.softmax_cross_entropy(b, np.eye(4)[labels], reduction=reduction)
    np.testing.assert_array_equal(la.data, lb.data)
    la.sum().backward()
    lb.sum().backward()
    np.testing.assert_array_equal(a.grad.data, b.grad.data)


def test_class_indices_out_of_range_or_miscounted_are_rejected():
    z = Tensor(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"class indices must lie in \[0, 3\) for 3 classes, "
                       "got values from 0 to 3"):
        F.softmax_cross_entropy(z, np.array([0, 3]))
    with pytest.raises(ValueError, match="3 class indices for 2 rows of logits"):
        F.softmax_cross_entropy(z, np.array([0, 1, 2]))


# ---------------------------------------------------------------------- optimizers
def params():
    return [Tensor(np.zeros(2), requires_grad=True)]


@pytest.mark.parametrize("kwargs, error, message", [
    ({"lr": 0.1, "momentum": -0.5}, ValueError,
     r"SGD: momentum must be a finite number in \[0, 1\), got -0\.5"),
    ({"lr": 0.1, "momentum": 1.0}, ValueError, r"momentum must be a finite number in \[0, 1\)"),
    ({"lr": "0.1"}, TypeError, r"SGD: learning rate lr must be a real number, got '0\.1' of "
     "type str"),
    ({"lr": 0.1, "weight_decay": -1.0}, ValueError, r"weight_decay must be a finite number >= 0"),
    ({"lr": 0.1, "momentum": True}, TypeError, "momentum must be a real number"),
])
def test_sgd_rejects_bad_hyperparameters(kwargs, error, message):
    with pytest.raises(error, match=message):
        optim.SGD(params(), **kwargs)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"betas": (0.9, 1.0)}, ValueError, r"Adam: betas\[1\] \(beta2\) must be a finite number in "
     r"\[0, 1\), got 1\.0"),
    ({"betas": (-0.1, 0.99)}, ValueError, r"betas\[0\] \(beta1\) must be a finite number"),
    ({"betas": (0.9,)}, TypeError, r"betas must be a pair \(beta1, beta2\), got \(0\.9,\)"),
    ({"betas": "ab"}, TypeError, "betas must be a pair"),
    ({"betas": ("0.9", 0.99)}, TypeError, r"betas\[0\] \(beta1\) must be a real number"),
    ({"eps": 0.0}, ValueError, r"Adam: eps must be a finite number > 0, got 0\.0"),
    ({"eps": float("nan")}, ValueError, "eps must be a finite number"),
    ({"lr": -1e-3}, ValueError, "Adam: learning rate must be positive and finite, got -0.001"),
    ({"lr": None}, TypeError, "learning rate lr must be a real number, got None"),
])
def test_adam_rejects_bad_hyperparameters(kwargs, error, message):
    with pytest.raises(error, match=message):
        optim.Adam(params(), **kwargs)


def test_numpy_scalars_are_accepted_as_hyperparameters():
    sgd = optim.SGD(params(), lr=np.float32(0.1), momentum=np.float64(0.9),
                    weight_decay=np.int64(0))
    adam = optim.Adam(params(), lr=np.float32(1e-3), betas=(np.float64(0.9), np.float32(0.99)),
                      eps=np.float64(1e-8))
    assert isinstance(sgd.lr, float) and isinstance(adam.betas[1], float)
    assert sgd.momentum == 0.9 and adam.beta1 == 0.9


# ---------------------------------------------------------------------- model sizes
@pytest.mark.parametrize("sizes, error, message", [
    ([784, 0, 10], ValueError, r"sizes\[1\] must be at least 1, got 0"),
    ([784, 2.5, 10], TypeError, r"sizes\[1\] must be a whole number, got float 2.5"),
    ([784, True, 10], TypeError, r"sizes\[1\] must be a whole number, got bool"),
    ([784, 100, -10], ValueError, r"sizes\[2\] must be at least 1"),
])
def test_mlp_refuses_nonsense_sizes(sizes, error, message):
    from minigrad.estimators.binary import StraightThroughNeuron
    from minigrad.models import MLPClassifier

    with pytest.raises(error, match=message):
        MLPClassifier(sizes, lambda: StraightThroughNeuron("pass_through"), 0)


MEAN = np.full(16, 0.3)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(n_hidden=2.5), TypeError, "n_hidden must be a whole number, got float 2.5"),
    (dict(n_hidden=0), ValueError, "n_hidden must be at least 1"),
    (dict(n_layers=True), TypeError, "n_layers must be a whole number, got bool"),
    (dict(n_layers=1.0), TypeError, "n_layers must be a whole number"),
    (dict(nonlinear="yes"), TypeError, "nonlinear must be True or False"),
    (dict(train_mean=np.array([])), ValueError, "train_mean must be the mean of binary"),
    (dict(train_mean=np.array([0.2, np.nan])), ValueError, "train_mean must be finite"),
    (dict(train_mean=np.array([0.2, np.inf])), ValueError, "train_mean must be finite"),
    (dict(train_mean=np.full(16, 120.0)), ValueError, r"values in \[0, 1\]"),
])
def test_sbn_refuses_nonsense_sizes_and_means(kwargs, error, message):
    from minigrad.models.sbn import SigmoidBeliefNet

    kwargs = {"train_mean": MEAN, "n_hidden": 4, **kwargs}
    with pytest.raises(error, match=message):
        SigmoidBeliefNet(**kwargs)


@pytest.mark.parametrize("method", ["elbo", "iwae_bound"])
def test_sbn_bounds_refuse_images_of_0_to_255_and_non_finite_pixels(method):
    from minigrad.models.sbn import SigmoidBeliefNet

    model, rng = SigmoidBeliefNet(MEAN, n_hidden=4), np.random.default_rng(0)
    bound = (lambda x: model.elbo(x, rng)) if method == "elbo" else \
        (lambda x: model.iwae_bound(x, 2, rng))
    grey = np.random.default_rng(1).integers(0, 256, (3, 16)).astype(np.float32)
    with pytest.raises(ValueError, match="binary pixels .* dividing by 255"):
        bound(grey)
    grey[0, 0] = np.inf
    with pytest.raises(ValueError, match="x must be finite"):
        bound(grey)
    assert np.all(np.isfinite(bound((grey > 128).astype(np.float32))))


def test_an_inf_pixel_is_refused_where_the_data_enters():
    from minigrad.data import batches, minibatch_stream
    from minigrad.estimators.score_function import ReinforceNeuron
    from minigrad.experiments import step_loss
    from minigrad.models import MLPClassifier

    x, y = np.random.default_rng(0).random((20, 16)).astype(np.float32), np.zeros(20, int)
    x[7, 3] = np.inf
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"x \(the examples\) must be finite.*index \(7, 3\)"):
        minibatch_stream(x, y, 5, rng)
    with pytest.raises(ValueError, match=r"x \(the examples\) must be finite"):
        batches(x, y, 5, rng)
    model = MLPClassifier([16, 8, 10], lambda: ReinforceNeuron(baseline=True), rng)
    with pytest.raises(ValueError, match="MLPClassifier: the input x must be finite"):
        step_loss(model, x[5:10], np.eye(10, dtype=np.float32)[y[5:10]], rng=rng)
    assert all(np.all(np.isfinite(p.data)) for p in model.parameters())   # nothing moved
