"""Short SBN training runs pinned to the numbers the step gave before it was made faster.

The step evaluates ``f(b)`` once (the estimator's learning signal returns the step's value
at its own sample), takes the gradients of ``c(z)`` and ``c(z~)`` in one backward pass,
makes the temperature once per layer and the Concrete relaxation as one Function. None of
this may change a run: for every estimator an SBN trains with, on one and two linear layers
and (for the estimators with their own step code) the nonlinear model, a 12-step run must
record the training ELBO, the encoder gradient's log-variance and the validation bound that
the previous code recorded, and so must a variance race, where every racer is given the
step's f(b) (the numbers below were computed by the previous code, from the same data, seed
and configuration).

The tolerance is float32 rounding, not a fit to the data: a recorded value may move by a
few units in the last place of a float32 (``ULPS`` epsilons, relative), what evaluating the
same sums in another order can do to it. The changes above give the same bits (every run
below matched exactly when they were made). A reordering that changes more is refused, as
it should be: Adam divides each gradient component by its own scale, so a component that
is rounding noise (the difference of two nearly equal terms) takes a full step whose sign
the rounding decides. Summing REBAR's two vector-Jacobian products in one pass, for example,
moved the nonlinear model's ELBO by about 0.01 nats in 12 steps; that change was left out.
"""
from __future__ import annotations

import numpy as np
import pytest

from minigrad.estimators.catalogue import SBN_ESTIMATORS
from minigrad.experiments.sbn import SBNConfig, train_sbn, variance_race

ULPS = 4
RTOL = ULPS * float(np.finfo(np.float32).eps)

# (estimator, stochastic layers, nonlinear): (training ELBO per record, log-variance per
# record, validation bound), from the code before the step shared f(b) and the backward pass
PINNED = {
    ('REINFORCE', 1, False): (
        [-506.4832229614258, -506.48534393310547, -503.3157424926758],
        [5.657225865447441, 5.472889065687925, 5.232800502485025],
        -522.6058626146837),
    ('REINFORCE LOO', 1, False): (
        [-505.5666961669922, -506.15604400634766, -504.07777404785156],
        [-2.129384319200752, -2.1267691650888874, -2.053015729514227],
        -522.7798552824614),
    ('NVIL', 1, False): (
        [-506.5050811767578, -506.63135528564453, -503.2823486328125],
        [4.5331229121669185, 3.992121785186895, 3.6311826890258168],
        -522.9486005347446),
    ('NVIL (REBAR code)', 1, False): (
        [-506.4833068847656, -506.49832916259766, -503.3840866088867],
        [5.945311910668461, 6.094672073284284, 6.138645293082248],
        -522.6102697098711),
    ('ARM', 1, False): (
        [-506.50489044189453, -506.31697845458984, -502.7911071777344],
        [-2.2270152682231545, -1.9582047995056295, -1.9253957423576342],
        -522.8012242171801),
    ('DisARM', 1, False): (
        [-506.4938430786133, -506.3903045654297, -502.8876953125],
        [-2.410463820832333, -2.1552967571395003, -2.1259813898734325],
        -522.5528315220357),
    ('REBAR', 1, False): (
        [-506.4550323486328, -506.29776763916016, -503.12635040283203],
        [-1.3905351431466912, -1.3042499886620345, -1.3101939149738255],
        -522.6048344691118),
    ('REBAR (Concrete relaxation)', 1, False): (
        [-506.4529571533203, -506.2840347290039, -503.21619415283203],
        [-1.0964645055853683, -1.0124079907323267, -1.0110192089845749],
        -522.5490697016332),
    ('dynamic REBAR', 1, False): (
        [-506.4550247192383, -506.2987823486328, -503.0312957763672],
        [-1.5649637297268524, -1.707364449941332, -1.9209491584941045],
        -522.6021078154188),
    ('RELAX', 1, False): (
        [-506.45291900634766, -506.2909240722656, -503.1111145019531],
        [-1.1973627682594838, -1.4282773229431378, -1.6278430882733785],
        -522.606068022379),
    ('SimpleMuProp', 1, False): (
        [-506.4427490234375, -506.33241271972656, -503.1333465576172],
        [0.32890999251070874, 0.49263637195342497, 0.4925493948598826],
        -522.6077694937835),
    ('MuProp', 1, False): (
        [-506.48197174072266, -506.39720153808594, -503.3007583618164],
        [0.2643818294695544, 0.4032347338356599, 0.4506871741022826],
        -522.6116465475251),
    ('MuProp (REBAR code)', 1, False): (
        [-506.48250579833984, -506.3881530761719, -503.3078155517578],
        [0.20658138826436237, 0.21849322091381548, 0.13995640989000435],
        -522.6089741257114),
    ('Concrete', 1, False): (
        [-506.00231170654297, -504.14418029785156, -499.4076614379883],
        [-7.305173885205873, -7.245314735330354, -7.2445001930151225],
        -521.5817005647381),
    ('REINFORCE', 2, False): (
        [-545.5774688720703, -544.9707336425781, -547.5345306396484],
        [6.333460356650601, 6.151500747316231, 5.912749840267452],
        -565.7115259782657),
    ('REINFORCE LOO', 2, False): (
        [-546.0250244140625, -546.6566467285156, -547.0624389648438],
        [-1.1288034300646168, -1.0858216697186067, -1.0981957934232673],
        -568.0075484388341),
    ('NVIL', 2, False): (
        [-545.5776672363281, -544.4622497558594, -547.7018280029297],
        [5.19905877607974, 4.65805191288729, 4.297114523672676],
        -565.5975329669294),
    ('NVIL (REBAR code)', 2, False): (
        [-545.5878143310547, -544.9802093505859, -547.2837524414062],
        [6.623036071908228, 6.775261656047051, 6.816371580389014],
        -565.3139713842318),
    ('ARM', 2, False): (
        [-545.5235290527344, -544.8662261962891, -547.5183258056641],
        [-1.1120417481944833, -1.0033124963945506, -0.9898052617091343],
        -564.5604078456557),
    ('DisARM', 2, False): (
        [-545.7420043945312, -544.8765869140625, -547.9457550048828],
        [-1.3100996233948379, -1.175967693128705, -1.1668595620326394],
        -565.4749082179201),
    ('REBAR', 2, False): (
        [-545.6410675048828, -544.8476104736328, -547.3130035400391],
        [-0.09424097394764737, 0.05678248437149862, 0.1045685779363277],
        -565.2402530490948),
    ('REBAR (Concrete relaxation)', 2, False): (
        [-545.5472259521484, -544.82958984375, -547.3776245117188],
        [0.3378598950706309, 0.49079853456705974, 0.5347241007391571],
        -565.2909690561675),
    ('dynamic REBAR', 2, False): (
        [-545.6489868164062, -544.8594970703125, -547.3116912841797],
        [-0.20280797878384937, -0.18873925142230452, -0.26503079439217153],
        -565.0839336169854),
    ('RELAX', 2, False): (
        [-545.5471343994141, -544.8092346191406, -547.2863464355469],
        [0.2750953993593124, 0.23334139559763015, 0.014367314402679148],
        -565.1095916641676),
    ('SimpleMuProp', 2, False): (
        [-545.8526153564453, -544.8085784912109, -547.6284027099609],
        [1.1003056374224167, 1.2390805761772314, 1.3260649050329258],
        -565.1550726220319),
    ('MuProp', 2, False): (
        [-545.4388275146484, -544.6913452148438, -547.6920013427734],
        [1.0740590734084472, 1.2520803536791127, 1.3148723022515532],
        -566.10008322125),
    ('MuProp (REBAR code)', 2, False): (
        [-545.5146026611328, -544.6799011230469, -547.7926635742188],
        [1.0267369025692714, 1.1040268546887744, 1.0749083803559751],
        -566.0917434942219),
    ('Concrete', 2, False): (
        [-545.0234222412109, -543.6104278564453, -543.7618865966797],
        [-6.1954145671831125, -6.05956625763533, -6.030519629665939],
        -565.5122883768208),
    ('NVIL', 1, True): (
        [-478.0249557495117, -477.23221588134766, -477.95740509033203],
        [3.911303598679132, 3.3703319906246434, 3.009401831654547],
        -496.9081711827572),
    ('MuProp', 1, True): (
        [-477.9898681640625, -477.2962417602539, -477.9019088745117],
        [-2.693985352750277, -2.5166555341388857, -2.4905253934421796],
        -497.16458704339954),
    ('DisARM', 1, True): (
        [-478.12218475341797, -476.9306640625, -477.46473693847656],
        [-3.7550450835089464, -3.7524291221502253, -3.7678443753842994],
        -497.12257835488094),
    ('REBAR', 1, True): (
        [-477.9535675048828, -477.1228561401367, -477.5878601074219],
        [-4.979015954921233, -4.739021514518296, -4.659633187411617],
        -497.3058445419286),
    ('dynamic REBAR', 1, True): (
        [-477.9550247192383, -477.0956497192383, -477.4445266723633],
        [-5.050626460392982, -4.748360927783056, -4.73097457358045],
        -496.73516284029165),
    ('RELAX', 1, True): (
        [-477.9708709716797, -477.18875885009766, -477.57494354248047],
        [-4.86757068946688, -4.69804478038853, -4.7360908048495896],
        -497.13653636097393),
}


def _data():
    rng = np.random.default_rng(21)
    x = (rng.random((72, 784)) < 0.3).astype(np.float32)
    return x[:48], x[48:]


def test_every_sbn_estimator_is_pinned():
    assert {name for name, _, _ in PINNED} == set(SBN_ESTIMATORS)


@pytest.mark.parametrize("case", list(PINNED), ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}")
def test_a_short_run_records_what_it_recorded_before(case):
    estimator, layers, nonlinear = case
    train, val = _data()
    config = SBNConfig(f"{estimator}-{layers}-{nonlinear}", estimator, steps=12,
                       n_layers=layers, nonlinear=nonlinear, record_every=4, eval_k=2,
                       eval_examples=4, seed=3)
    _, history = train_sbn(config, train, val)
    elbo, log_variance, val_iwae = PINNED[case]
    assert history.steps == [4, 8, 12]
    np.testing.assert_allclose(history.train_elbo, elbo, rtol=RTOL, atol=0)
    # a log-variance near 0 has no scale of its own: that of its variance, 1 nat
    np.testing.assert_allclose(history.log_variance, log_variance, rtol=RTOL, atol=RTOL)
    np.testing.assert_allclose(history.val_iwae, val_iwae, rtol=RTOL, atol=0)


# A variance race (REBAR followed, the others evaluated on its minibatches and noise, each
# racer given the step's f(b)): (layers, nonlinear): (training ELBO, log-variance per racer)
RACERS = ["NVIL", "MuProp", "DisARM", "dynamic REBAR", "RELAX", "MuProp (REBAR code)"]
PINNED_RACES = {
    (1, True): (
        [-477.9535675048828, -477.1228561401367],
        {
        'REBAR': [-4.979015954921233, -4.739021514518296],
        'NVIL': [3.911297951495861, 3.370321501282289],
        'MuProp': [-2.7137644539050547, -2.5292071588586644],
        'DisARM': [-3.7714385369810848, -3.780589894704267],
        'dynamic REBAR': [-5.0586819207200096, -4.781251652946487],
        'RELAX': [-4.893468574623205, -4.684521376775661],
        'MuProp (REBAR code)': [-2.9173352315374874, -2.984286619562211]}),
    (2, False): (
        [-545.6410675048828, -544.8476104736328],
        {
        'REBAR': [-0.09424097394764737, 0.05678248437149862],
        'NVIL': [5.199058797877077, 4.658049641664982],
        'MuProp': [1.0757084231907164, 1.2534658688501679],
        'DisARM': [-1.3548019959088138, -1.220801998252701],
        'dynamic REBAR': [-0.20365603741561472, -0.18910661912771212],
        'RELAX': [0.28029498350275917, 0.23773639150449652],
        'MuProp (REBAR code)': [1.0269010124481044, 1.1035800272147973]}),
}


@pytest.mark.parametrize("case", list(PINNED_RACES), ids=lambda c: f"{c[0]}-{c[1]}")
def test_a_variance_race_records_what_it_recorded_before(case):
    layers, nonlinear = case
    train, _ = _data()
    config = SBNConfig("race", "REBAR", steps=8, n_layers=layers, nonlinear=nonlinear,
                       record_every=4, seed=3)
    race = variance_race(config, train, RACERS)
    elbo, log_variance = PINNED_RACES[case]
    np.testing.assert_allclose(race.train_elbo, elbo, rtol=RTOL, atol=0)
    assert set(race.log_variance) == set(log_variance)
    for name, values in log_variance.items():
        np.testing.assert_allclose(race.log_variance[name], values, rtol=RTOL, atol=RTOL,
                                   err_msg=name)


def test_a_learning_signal_returns_its_given_value_only_at_its_own_sample():
    from minigrad.models.sbn import SigmoidBeliefNet
    from minigrad.tensor import Tensor, no_grad

    train, _ = _data()
    x = train[:5]
    model = SigmoidBeliefNet(train.mean(axis=0), n_hidden=6, n_layers=2, rng=0)
    u = model.noise(np.random.default_rng(1), len(x))
    logits, samples = model.sample_encoder(x, u)
    with no_grad():
        exact = model.objective(x, samples, logits).data
    marker = exact + 1000.0   # not f(b): shows which values were returned
    for layer in range(2):
        f = model.learning_signal(x, samples, layer, u, logits, value=marker)
        with no_grad():
            np.testing.assert_array_equal(f(Tensor(samples[layer])).data, marker)
            other = 1.0 - samples[layer]
            plain = model.learning_signal(x, samples, layer, u, logits)(Tensor(other)).data
            np.testing.assert_array_equal(f(Tensor(other)).data, plain)   # evaluated
        with_graph = f(Tensor(samples[layer]))      # gradients on: evaluated, with its graph
        np.testing.assert_array_equal(with_graph.data, exact)
        assert with_graph.requires_grad
    with pytest.raises(ValueError, match="one f\\(b\\) per example"):
        model.learning_signal(x, samples, 0, u, logits, value=marker[:3])
    with pytest.raises(ValueError, match="must be finite"):
        model.learning_signal(x, samples, 0, u, logits, value=marker * np.nan)
