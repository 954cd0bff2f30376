import math

import numpy as np
import pytest
import torch

from autofocus.models import (
    DefocusClassifier,
    YangNet,
    ZernikeRegressor,
    certainty,
    fuse_for_inference,
    median_level,
    rps_loss,
)


def test_rps_worked_example() -> None:
    # p = (0.5, 0.3, 0.2), true class 1: CDF_p = (.5, .8, 1), CDF_y = (0, 1, 1)
    # RPS = .5^2 + .2^2 + 0 = 0.29
    p = torch.tensor([[0.5, 0.3, 0.2]])
    loss = rps_loss(torch.log(p), torch.tensor([1]))
    assert float(loss) == pytest.approx(0.29, abs=1e-6)
    # a soft target works the same way
    loss2 = rps_loss(torch.log(p), torch.tensor([[0.0, 1.0, 0.0]]))
    assert float(loss2) == pytest.approx(0.29, abs=1e-6)


def test_rps_penalises_distant_errors_more() -> None:
    target = torch.tensor([0])
    near = rps_loss(torch.log(torch.tensor([[0.0001, 0.9998, 0.0001]])), target)
    far = rps_loss(torch.log(torch.tensor([[0.0001, 0.0001, 0.9998]])), target)
    assert float(far) > 1.9 * float(near)


def test_certainty_hand_computed() -> None:
    k = 11
    assert certainty(np.eye(k)[3]) == pytest.approx(1.0)
    assert certainty(np.full(k, 1 / k)) == pytest.approx(0.0, abs=1e-12)
    p = np.zeros(k)
    p[:2] = 0.5  # H = ln 2
    assert certainty(p) == pytest.approx(1 - math.log(2) / math.log(11))


def test_median_level_hand_computed() -> None:
    # CDF (0.4, 0.5, 1.0): the first level reaching 1/2 is 1; the argmax would be 2
    assert median_level(np.array([0.4, 0.1, 0.5])) == 1
    assert median_level(np.array([0.5, 0.5, 0.0])) == 0  # CDF exactly 1/2 at level 0
    assert median_level(np.array([0.2, 0.2, 0.2, 0.4])) == 2
    assert median_level(np.eye(11)[10]) == 10
    assert median_level(np.full(11, 1 / 11)) == 5
    # a bimodal distribution: the median sits between the modes, nearer the heavier one
    p = np.zeros(11)
    p[[1, 9]] = [0.45, 0.55]
    assert median_level(p) == 9 and median_level(p[::-1]) == 1


def test_shapes_and_costs() -> None:
    c, r, y = DefocusClassifier().eval(), ZernikeRegressor().eval(), YangNet().eval()
    with torch.inference_mode():
        assert c(torch.zeros(2, 1, 84, 84)).shape == (2, 11)
        assert r(torch.zeros(2, 1, 128, 128)).shape == (2, 5)
        assert y(torch.zeros(2, 1, 84, 84)).shape == (2, 11)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(y) > 20e6  # Yang et al.'s network is ~28 M parameters
    assert n(c) < 0.01 * n(y)


def test_radial_spectrum_finds_the_rings_of_a_periodic_pattern() -> None:
    """A cosine of period 84/12 px puts its power in the ring at radius 12/84 cycles/px;
    the features are rotation invariant (90 degrees, exactly on the square grid)."""
    import torch

    from autofocus.models import RadialSpectrum

    spec = RadialSpectrum(84, 20)
    x = np.mgrid[0:84, 0:84][1]
    img = np.cos(2 * np.pi * 12 * x / 84)
    t = torch.from_numpy(img.astype(np.float32))[None, None]
    out = spec(t)[0].numpy()
    lo, hi = 1 / 84, 0.5
    expected_bin = int((12 / 84 - lo) / (hi - lo) * 20)  # 5.37: away from an edge
    assert int(np.argmax(out)) == expected_bin
    np.testing.assert_allclose(spec(t.transpose(2, 3))[0].numpy(), out, rtol=1e-4)
    assert not any("rings" in k or "window" in k for k in spec.state_dict())  # rebuilt, not stored


@pytest.mark.parametrize("name", ["classifier", "regressor"])
def test_batchnorm_folding_keeps_the_shipped_outputs(name: str) -> None:
    from autofocus.registry import load_model

    net, _ = load_model(name)
    fused = fuse_for_inference(net)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert n_bn == 0 < sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    size = 84 if name == "classifier" else 128
    x = torch.randn(16, 1, size, size, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        ref, out = net(x), fused(x)
    # the cached, shipped network is left as it was
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_optics_features_describe_the_objective_or_are_zero() -> None:
    import math

    from autofocus.models import N_OPTICS_FEATURES, optics_features
    from autofocus.optics import get_objective

    assert optics_features(None).tolist() == [0.0] * N_OPTICS_FEATURES
    f = optics_features(get_objective("10x-0.3-air"))
    # 0.52 um / (2 x 0.3) = 0.8667 um over 6.5 um / 10x = 0.65 um pixels: 1.3333 px
    assert f.dtype == np.float32
    np.testing.assert_allclose(f, [1.0, 0.2876821, 0.3, 0.3], rtol=1e-6)
    oil = optics_features(get_objective("60x-1.4-oil"))
    assert oil[3] == pytest.approx(1.4 / 1.515, rel=1e-6)
    binned = get_objective("10x-0.3-air").model_copy(update={"binning": 2})
    assert optics_features(binned)[1] == pytest.approx(math.log(1.3333333 / 2), rel=1e-6)


def test_optics_features_refuse_optics_without_a_finite_spot() -> None:
    from pydantic import ValidationError

    from autofocus.errors import InvalidInputError
    from autofocus.models import optics_features
    from autofocus.optics import Objective

    with pytest.raises(ValidationError):
        Objective(name="x", magnification=float("inf"), na=0.3)
    tiny = Objective(name="x", magnification=1e10, na=0.3, camera_pixel_size_um=1e-300)
    with pytest.raises(InvalidInputError, match="finite spot"):
        optics_features(tiny)


def test_a_classifier_with_optics_reads_none_as_unknown() -> None:
    from autofocus.models import DefocusClassifier, fuse_for_inference

    torch.manual_seed(0)
    net = DefocusClassifier(widths=(8, 16), hidden=8, optics_features=4).eval()
    x = torch.randn(3, 1, 84, 84)
    zeros = torch.zeros(3, 4)
    with torch.inference_mode():
        assert torch.equal(net(x), net(x, zeros))
        told = net(x, torch.tensor([[1.0, 0.3, 0.5, 0.5]] * 3))
        assert not torch.allclose(told, net(x))
        fused = fuse_for_inference(net)
        torch.testing.assert_close(fused(x, zeros), net(x, zeros), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError):
        DefocusClassifier(optics_features=3)
    with pytest.raises(ValueError):
        DefocusClassifier(widths=(8, 16))(x, zeros)


@pytest.mark.parametrize("cls", [DefocusClassifier, ZernikeRegressor])
def test_input_asinh_compresses_what_the_trunk_reads_not_what_the_spectrum_reads(cls) -> None:
    """``input_asinh``: the trunk gets asinh(x); the spectrum branch the linear patch."""
    torch.manual_seed(0)
    plain = cls(widths=(8, 16), hidden=8, spectral_bins=6).eval()
    squashed = cls(widths=(8, 16), hidden=8, spectral_bins=6, input_asinh=True).eval()
    squashed.load_state_dict(plain.state_dict())  # same weights: no new parameters
    size = 84 if cls is DefocusClassifier else 128
    x = torch.randn(3, 1, size, size) * 4
    with torch.no_grad():
        seen: dict[str, torch.Tensor] = {}

        def keep(name: str):
            def hook(module, inputs, output) -> None:  # None: the output stays as it is
                seen[name] = inputs[0]

            return hook

        squashed.trunk.register_forward_hook(keep("trunk"))
        squashed.spectrum.register_forward_hook(keep("spec"))
        out = squashed(x)
        assert torch.equal(seen["trunk"], torch.asinh(x))
        assert torch.equal(seen["spec"], x)
        # on small values asinh is nearly the identity, so the two models nearly agree
        small = x / 1000
        assert torch.allclose(squashed(small), plain(small), atol=1e-4)
        assert not torch.allclose(out, plain(x))


def test_scorer_tiles_the_classifier_at_its_patch_size() -> None:
    import autofocus.models as models
    import autofocus.scorer as scorer

    assert scorer.CLASSIFIER_PATCH == models.CLASSIFIER_PATCH
