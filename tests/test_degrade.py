import pytest
import torch

from lnca_cli import degrade


def images(n=2, c=3, h=32, w=32, seed=0):
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed))


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def first(output):
    """The degraded images, for functions that also return a mask."""
    return output[0] if isinstance(output, tuple) else output


DEGRADATIONS = {
    "masked": lambda x, g: degrade.masked_noise(x, 0.5, g),
    "gaussian": lambda x, g: degrade.gaussian_noise(x, 25.0, g),
    "poisson": lambda x, g: degrade.poisson_gaussian_noise(x, 30.0, 5.0, g),
    "random_noise": degrade.random_noise,
    "random_blur": degrade.random_blur,
    "random_masked": degrade.random_masked_noise,
    "spec_motion": degrade.parse_degradation("motion:7"),
}


@pytest.mark.parametrize("name", DEGRADATIONS)
def test_shape_dtype_and_seeding(name):
    x = images()
    degraded = first(DEGRADATIONS[name](x, seeded(1)))
    assert degraded.shape == x.shape and degraded.dtype == torch.float32
    assert torch.equal(degraded, first(DEGRADATIONS[name](x, seeded(1))))
    assert not torch.equal(degraded, first(DEGRADATIONS[name](x, seeded(2))))


def test_masked_noise_changes_only_masked_pixels():
    x = images(n=1, h=64, w=64)
    degraded, mask = degrade.masked_noise(x, 0.3, seeded())
    assert mask.shape == (1, 1, 64, 64)
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert abs(mask.mean().item() - 0.3) < 0.03
    assert torch.equal(degraded * (1 - mask), x * (1 - mask))
    assert 0.0 <= degraded.min() and degraded.max() <= 1.0


def test_masked_noise_per_image_p():
    _, mask = degrade.masked_noise(images(n=2, h=64, w=64), torch.tensor([0.1, 0.9]), seeded())
    fractions = mask.flatten(1).mean(dim=1)
    assert abs(fractions[0] - 0.1) < 0.03 and abs(fractions[1] - 0.9) < 0.03


def test_gaussian_noise_std_and_clipping():
    x = torch.full((2, 3, 64, 64), 0.5)
    noisy = degrade.gaussian_noise(x, torch.tensor([10.0, 40.0]), seeded())
    stds = (noisy - x).flatten(1).std(dim=1)
    assert torch.allclose(stds, torch.tensor([10.0, 40.0]) / 255, rtol=0.05)
    big = degrade.gaussian_noise(x, 200.0, seeded())
    assert big.min() < 0 and big.max() > 1
    clipped = degrade.gaussian_noise(x, 200.0, seeded(), clip=True)
    assert clipped.min() == 0 and clipped.max() == 1


def test_poisson_noise_grows_as_peak_falls():
    x = torch.full((2, 3, 64, 64), 0.5)
    noisy = degrade.poisson_gaussian_noise(x, torch.tensor([10.0, 1000.0]), 0.0, seeded())
    stds = (noisy - x).flatten(1).std(dim=1)
    expected = (0.5 / torch.tensor([10.0, 1000.0])).sqrt()  # Poisson variance = mean
    assert torch.allclose(stds, expected, rtol=0.1)


@pytest.mark.parametrize("length", [1, 4, 7, 10, 21])
@pytest.mark.parametrize("angle", [0.0, 33.0, 90.0, 217.5])
def test_motion_kernel_sums_to_one(length, angle):
    kernel = degrade.motion_blur_kernel(length, angle)
    assert kernel.shape == (length, length)
    assert kernel.min() >= 0 and torch.isclose(kernel.sum(), torch.tensor(1.0))


def test_motion_kernel_horizontal_and_vertical():
    line = torch.zeros(7, 7)
    line[3] = 1 / 7
    assert torch.allclose(degrade.motion_blur_kernel(7, 0.0), line, atol=1e-6)
    assert torch.allclose(degrade.motion_blur_kernel(7, 90.0), line.T, atol=1e-6)


def test_gaussian_blur_kernel():
    kernel = degrade.gaussian_blur_kernel(1.5)
    assert kernel.shape == (11, 11)
    assert torch.isclose(kernel.sum(), torch.tensor(1.0))
    assert kernel[5, 5] == kernel.max()
    assert torch.allclose(kernel, kernel.T)


@pytest.mark.parametrize("kernel", [degrade.motion_blur_kernel(8, 30.0), degrade.gaussian_blur_kernel(2.0)])
def test_blur_keeps_constant_images(kernel):
    x = torch.full((2, 3, 20, 24), 0.3)
    assert torch.allclose(degrade.blur(x, kernel), x, atol=1e-6)


def test_blur_per_image_kernels_match_one_by_one():
    x = images()
    kernels = torch.stack([degrade.motion_blur_kernel(5, 0.0), degrade.motion_blur_kernel(5, 60.0)])
    together = degrade.blur(x, kernels)
    for i in range(2):
        assert torch.allclose(together[i : i + 1], degrade.blur(x[i : i + 1], kernels[i]), atol=1e-6)


def test_blur_of_an_impulse_is_the_kernel():
    x = torch.zeros(1, 1, 15, 15)
    x[0, 0, 7, 7] = 1
    kernel = degrade.motion_blur_kernel(7, 45.0)
    assert torch.allclose(degrade.blur(x, kernel)[0, 0, 4:11, 4:11], kernel, atol=1e-6)


def test_random_masked_noise_p_in_range():
    _, mask = degrade.random_masked_noise(images(n=8, h=64, w=64), seeded(), p_range=(0.4, 0.6))
    fractions = mask.flatten(1).mean(dim=1)
    assert ((fractions > 0.35) & (fractions < 0.65)).all()


@pytest.mark.parametrize(
    "spec", ["gaussian:25", "poisson:30", "poisson:30:5", "masked:0.5", "motion:7", "motion:15:45", "defocus:1.5"]
)
def test_parse_good_specs(spec):
    x = images()
    degraded = degrade.parse_degradation(spec)(x, seeded())
    assert degraded.shape == x.shape and not torch.equal(degraded, x)


def test_parsed_specs_mean_what_they_say():
    x = images()
    assert torch.equal(degrade.parse_degradation("gaussian:25")(x, seeded()), degrade.gaussian_noise(x, 25, seeded()))
    motion = degrade.parse_degradation("motion:15:45")(x, seeded())
    assert torch.equal(motion, degrade.blur(x, degrade.motion_blur_kernel(15, 45)))


@pytest.mark.parametrize(
    "spec, message",
    [
        ("foo:1", "unknown degradation 'foo'; expected one of gaussian, poisson, masked, motion, defocus"),
        ("gaussian", "expected gaussian:SIGMA"),
        ("gaussian:abc", "expected gaussian:SIGMA"),
        ("gaussian:-1", "sigma must be >= 0"),
        ("masked:1.5", "p must be in [0, 1]"),
        ("motion:7.5", "whole number"),
        ("motion:7:45:1", "takes 1 to 2 numbers"),
        ("defocus:0", "sigma must be > 0"),
    ],
)
def test_parse_bad_specs(spec, message):
    with pytest.raises(ValueError) as error:
        degrade.parse_degradation(spec)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_rejects_unbatched_images():
    with pytest.raises(ValueError, match="N, C, H, W"):
        degrade.gaussian_noise(torch.rand(3, 8, 8), 25.0, seeded())
