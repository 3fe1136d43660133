"""``grad(outputs, inputs)`` computes only the gradients on paths to ``inputs``.

A Function's backward is asked (through ``needs_input_grad``) only for the inputs from which
a requested tensor can be reached, on both backward passes (arrays, and Tensors when
``create_graph=True``); a branch that leads to no requested input is not walked at all.
``backward()`` still fills every leaf's ``.grad``. The values are those of the full pass.
"""
import numpy as np
import pytest

from minigrad import functions as F
from minigrad.gradcheck import gradcheck, gradgradcheck
from minigrad.tensor import Function, Tensor, grad


def leaf(rng, *shape):
    return Tensor(rng.standard_normal(shape), requires_grad=True)


class Product(Function):
    """y = a * b, recording which input gradients each call of its backward was asked for."""

    calls: list = []

    def forward(self, a, b):
        return a * b

    def backward(self, g):
        Product.calls.append(("backward", self.needs_input_grad))
        a, b = self.inputs
        return (g * b if self.needs_input_grad[0] else None,
                g * a if self.needs_input_grad[1] else None)

    def backward_arrays(self, g):
        Product.calls.append(("backward_arrays", self.needs_input_grad))
        a, b = self.inputs
        return (g * b._data if self.needs_input_grad[0] else None,
                g * a._data if self.needs_input_grad[1] else None)


class CountingLinear(F.Linear):
    """The fused Linear, recording the input gradients its backward was asked for."""

    calls: list = []

    def backward(self, g):
        CountingLinear.calls.append(("backward", self.needs_input_grad))
        return super().backward(g)

    def backward_arrays(self, g):
        CountingLinear.calls.append(("backward_arrays", self.needs_input_grad))
        return super().backward_arrays(g)


@pytest.fixture(autouse=True)
def fresh_records():
    Product.calls, CountingLinear.calls = [], []


def graph(a, w, b):
    """A graph where ``a`` and ``w`` meet in one node and ``b`` comes in after it."""
    h = Product.apply(F.tanh(a), w)
    return (F.sigmoid(h) * b).sum() + (h * h).sum()


@pytest.mark.parametrize("create_graph", [False, True])
def test_grad_asks_each_function_only_for_the_requested_paths(create_graph):
    rng = np.random.default_rng(0)
    a, w, b = leaf(rng, 3, 4), leaf(rng, 3, 4), leaf(rng, 3, 4)
    (ga,) = grad(graph(a, w, b), [a], create_graph=create_graph)
    method = "backward" if create_graph else "backward_arrays"
    assert Product.calls == [(method, (True, False))]   # w's gradient is never formed
    y = graph(a, w, b)
    y.backward()                                        # the full pass: every leaf
    assert Product.calls[-1] == ("backward_arrays", (True, True))
    np.testing.assert_array_equal(ga.data, a.grad.data)
    assert w.grad is not None and b.grad is not None


def test_a_branch_that_reaches_no_requested_input_is_not_walked():
    rng = np.random.default_rng(1)
    a, w, v = leaf(rng, 5), leaf(rng, 5), leaf(rng, 5)
    branch = Product.apply(w, v).sum()
    y = (F.exp(a) * a).sum() + branch
    (ga,) = grad(y, a)
    assert Product.calls == []
    np.testing.assert_allclose(ga.data, np.exp(a.data) * (1 + a.data))
    # the branch was neither run nor freed: a later pass through it still works
    (gw, gv) = grad(branch, [w, v])
    np.testing.assert_array_equal(gw.data, v.data)
    np.testing.assert_array_equal(gv.data, w.data)
    assert Product.calls == [("backward_arrays", (True, True))]


@pytest.mark.parametrize("create_graph", [False, True])
def test_a_fused_linear_forms_no_weight_gradient_when_only_its_input_is_asked(create_graph):
    rng = np.random.default_rng(2)
    x, weight, bias = leaf(rng, 6, 4), leaf(rng, 4, 3), leaf(rng, 3)
    y = F.sigmoid(CountingLinear.apply(x, weight, bias)).sum()
    (gx,) = grad(y, x, create_graph=create_graph)
    method = "backward" if create_graph else "backward_arrays"
    assert CountingLinear.calls == [(method, (True, False, False))]
    CountingLinear.calls.clear()
    y = F.sigmoid(CountingLinear.apply(x, weight, bias)).sum()
    (gw,) = grad(y, weight)
    assert CountingLinear.calls == [("backward_arrays", (False, True, False))]
    y = F.sigmoid(CountingLinear.apply(x, weight, bias)).sum()
    y.backward()
    np.testing.assert_array_equal(gx.data, x.grad.data)
    np.testing.assert_array_equal(gw.data, weight.grad.data)


def test_a_retained_graph_keeps_its_own_needs_for_the_next_pass():
    rng = np.random.default_rng(3)
    a, w = leaf(rng, 4), leaf(rng, 4)
    h = Product.apply(a, w)
    y = (h * h).sum()
    (ga,) = grad(y, a, retain_graph=True)
    assert h._ctx.needs_input_grad == (True, True)
    y.backward()
    assert [needs for _, needs in Product.calls] == [(True, False), (True, True)]
    np.testing.assert_array_equal(a.grad.data, ga.data)
    np.testing.assert_allclose(w.grad.data, 2 * (a.data * w.data) * a.data)


def test_an_intermediate_input_prunes_what_lies_below_it():
    rng = np.random.default_rng(4)
    a, w, b = leaf(rng, 3), leaf(rng, 3), leaf(rng, 3)
    h = Product.apply(a, w)
    y = (F.sigmoid(h) * b).sum()
    (gh,) = grad(y, h)
    assert Product.calls == []   # the node that made h is below the requested tensor
    s = 1 / (1 + np.exp(-h.data))
    np.testing.assert_allclose(gh.data, s * (1 - s) * b.data)


def test_allow_unused_with_a_pruned_graph():
    rng = np.random.default_rng(5)
    a, w, unused = leaf(rng, 3), leaf(rng, 3), leaf(rng, 3)
    y = (Product.apply(a, w) * F.exp(w)).sum()
    ga, gu = grad(y, [a, unused], allow_unused=True)
    assert gu is None
    assert Product.calls == [("backward_arrays", (True, False))]
    np.testing.assert_allclose(ga.data, w.data * np.exp(w.data))
    with pytest.raises(RuntimeError, match="do not depend on an input"):
        grad((Product.apply(a, w) * F.exp(w)).sum(), [a, unused])
    # only the unrelated branch requested: nothing is run, None comes back
    y = (F.exp(a)).sum() + Product.apply(w, w).sum()
    Product.calls.clear()
    (gu,) = grad(y, [unused], allow_unused=True)
    assert gu is None and Product.calls == []


def test_second_order_gradients_through_a_pruned_graph_match_finite_differences():
    rng = np.random.default_rng(6)
    # parameters closed over: grad() with respect to x alone prunes their gradients on
    # both passes that gradgradcheck takes
    weight, bias, scale = leaf(rng, 4, 3), leaf(rng, 3), leaf(rng, 6, 3)

    def fn(x):
        return F.sigmoid(F.linear(x, weight, bias)) * F.tanh(scale)

    x = leaf(rng, 6, 4)
    assert gradgradcheck(fn, [x])
    assert weight.grad is None and bias.grad is None and scale.grad is None

    # a gradient taken on a pruned graph, differentiated in everything it depends on:
    # the mixed second derivatives in x and the weight
    def input_gradient(x, w):
        y = (F.tanh(F.linear(x, w, bias)) * scale).sum()
        (gx,) = grad(y, x, create_graph=True)
        return gx

    assert gradcheck(input_gradient, [x, Tensor(weight.data.copy(), requires_grad=True)])


def test_second_order_gradients_of_a_pruned_custom_function():
    rng = np.random.default_rng(7)
    a, w, b = leaf(rng, 2, 3), leaf(rng, 2, 3), leaf(rng, 2, 3)

    def first(a, w):
        (ga,) = grad(graph(a, w, b), a, create_graph=True)
        return ga

    assert gradcheck(first, [a, w])
    assert ("backward", (True, False)) in Product.calls


def test_muprop_mean_field_slope_forms_no_decoder_weight_gradient(monkeypatch):
    from minigrad.estimators import score_function as E
    from minigrad.models.sbn import SigmoidBeliefNet

    rng = np.random.default_rng(8)
    model = SigmoidBeliefNet(rng.uniform(0.2, 0.8, 12), n_hidden=5, rng=0)
    x = (rng.random((4, 12)) < 0.5).astype(np.float32)
    u = model.noise(rng, 4)
    logits, samples = model.sample_encoder(x, u)
    asked = []
    original = F.Linear.backward_arrays

    def recording(self, g):
        asked.append(self.needs_input_grad)
        return original(self, g)

    monkeypatch.setattr(F.Linear, "backward_arrays", recording)
    E.muprop(logits[0], model.learning_signal(x, samples, 0, u, logits), u[0])
    assert asked == [(True, False, False)]   # the decoder: its input only


@pytest.mark.parametrize("estimator", ["REBAR", "RELAX", "MuProp"])
def test_an_sbn_step_updates_the_encoder_weights_in_place(estimator):
    """No graph is left holding the encoder's weights at the optimizer step (it would make
    the step write a new array, the graph's copy protection)."""
    from minigrad.experiments.sbn import SBNConfig, SBNRun

    rng = np.random.default_rng(9)
    train_x = (rng.random((48, 784)) < 0.3).astype(np.float32)
    run = SBNRun(SBNConfig("x", estimator, 2, record_every=2), train_x, train_x[:2])
    weights = [p.data for p in run.encoder]
    run.step()
    assert all(p.data is w for p, w in zip(run.encoder, weights))
    assert all(p.data.flags.writeable for p in run.encoder)
