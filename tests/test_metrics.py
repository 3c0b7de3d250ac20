import math

import numpy as np
import pytest
import torch

from lnca_cli.metrics import colour_mottle, psnr, quantize8, ssim


def images(n=2, c=3, h=24, w=24, seed=0):
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed))


def reference_ssim(x, y, data_range=1.0):
    """SSIM of two (C, H, W) numpy images, window by window, straight from Wang et al. (2004)."""
    coords = np.arange(11) - 5
    taps = np.exp(-(coords**2) / (2 * 1.5**2))
    weights = np.outer(taps, taps) / np.outer(taps, taps).sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    scores = []
    for a, b in zip(x, y):
        for i in range(a.shape[0] - 10):
            for j in range(a.shape[1] - 10):
                pa, pb = a[i : i + 11, j : j + 11], b[i : i + 11, j : j + 11]
                mu_a, mu_b = (weights * pa).sum(), (weights * pb).sum()
                var_a = (weights * (pa - mu_a) ** 2).sum()
                var_b = (weights * (pb - mu_b) ** 2).sum()
                cov = (weights * (pa - mu_a) * (pb - mu_b)).sum()
                scores.append(
                    (2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
                )
    return float(np.mean(scores))


def test_quantize8():
    x = torch.tensor([-0.5, 0.0, 0.5 / 255, 0.6 / 255, 0.5, 1.2])
    expected = torch.tensor([0.0, 0.0, 0.0, 1.0, 128.0, 255.0]) / 255  # 0.5 rounds to even (0)
    assert torch.allclose(quantize8(x), expected)


def test_psnr_identical_is_inf():
    x = images()
    assert torch.isinf(psnr(x, x)).all()


def test_psnr_known_mse():
    x = images().clamp(0, 0.8)
    assert torch.allclose(psnr(x, x + 0.1), torch.tensor([20.0, 20.0]), atol=1e-3)
    assert torch.allclose(psnr(255 * x, 255 * x + 25.5, data_range=255.0), torch.tensor([20.0, 20.0]), atol=1e-3)


def test_psnr_is_per_image():
    x = images()
    y = x.clone()
    y[1] += 0.01
    scores = psnr(x, y)
    assert scores.shape == (2,) and math.isinf(scores[0]) and torch.isclose(scores[1], torch.tensor(40.0))


def test_ssim_identical_is_one():
    x = images()
    assert torch.allclose(ssim(x, x), torch.ones(2))


def test_ssim_decreases_with_noise():
    x = images(n=1, h=32, w=32)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    scores = [ssim(x, x + s * noise).item() for s in (0.0, 0.05, 0.1, 0.3)]
    assert scores == sorted(scores, reverse=True) and scores[0] > scores[-1]


def test_ssim_matches_reference():
    x = images(n=2, c=2, h=16, w=14, seed=3).double()
    y = (x + 0.1 * images(n=2, c=2, h=16, w=14, seed=4).double()).clamp(0, 1)
    expected = [reference_ssim(a.numpy(), b.numpy()) for a, b in zip(x, y)]
    assert torch.allclose(ssim(x, y), torch.tensor(expected, dtype=torch.float64), atol=1e-10)


def test_ssim_small_images_shrink_the_window():
    x = images(n=1, h=6, w=9)
    assert torch.allclose(ssim(x, x), torch.ones(1))
    assert ssim(x, x.flip(-1)).item() < 1


def test_metrics_are_differentiable():
    x = images(n=1).requires_grad_()
    y = images(n=1, seed=1)
    (ssim(x, y) + psnr(x, y) + colour_mottle(x, y)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("metric", [psnr, ssim, colour_mottle])
def test_metrics_reject_mismatched_shapes(metric):
    with pytest.raises(ValueError, match="same shape"):
        metric(images(h=24), images(h=23))


def sky(n=1, size=64):
    """A clean image with a flat half (a sky) and a textured half."""
    clean = torch.full((n, 3, size, size), 0.5)
    clean[..., size // 2:, :] = images(n, 3, size - size // 2, size, seed=9)
    return clean


def blotches(shape, levels, seed=0):
    """Colour blotches about 8 px across, of `levels` RMS per channel, none in luminance."""
    low = torch.randn(shape[0], 3, shape[2] // 8, shape[3] // 8, generator=torch.Generator().manual_seed(seed))
    low = torch.nn.functional.interpolate(low - low.mean(dim=1, keepdim=True), size=shape[2:], mode="bilinear")
    return low / low.pow(2).mean().sqrt() * levels / 255


def test_mottle_is_zero_for_a_perfect_restore_and_for_grayscale():
    clean = sky()
    assert colour_mottle(clean, clean).item() == 0.0
    gray = clean[:, :1]
    assert colour_mottle(gray + blotches(clean.shape, 5)[:, :1], gray).tolist() == [0.0]


def test_mottle_sees_colour_blotches_in_flat_areas_and_not_fine_noise_or_brightness():
    clean = sky()
    blotchy = colour_mottle(clean + blotches(clean.shape, 3), clean).item()
    fine = colour_mottle(clean + 3 / 255 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(1)),
                         clean).item()
    brighter = colour_mottle(clean + 3 / 255, clean).item()
    assert blotchy > 1.5  # most of the blotches' 3 levels survive the low-pass
    assert fine < blotchy / 3  # pixel-level noise averages out
    assert brighter == pytest.approx(0.0, abs=1e-4)  # the same shift in every channel has no colour


def test_mottle_scores_the_flattest_fifth_only():
    clean = sky()
    in_texture = torch.zeros_like(clean)
    in_texture[..., 40:, :] = blotches(clean.shape, 6)[..., 40:, :]  # deep in the textured half
    in_sky = torch.zeros_like(clean)
    in_sky[..., :24, :] = blotches(clean.shape, 6)[..., :24, :]
    assert colour_mottle(clean + in_texture, clean).item() < 0.1
    assert colour_mottle(clean + in_sky, clean).item() > 2.0


def test_mottle_counts_a_uniform_colour_shift():
    clean = sky()
    redder = clean.clone()
    redder[:, 0] += 2 / 255
    # (r - g) / sqrt(2) = 2 / sqrt(2) and (r + g - 2b) / sqrt(6) = 2 / sqrt(6): RMS over the two planes
    assert colour_mottle(redder, clean).item() == pytest.approx(math.sqrt((2 + 2 / 3) / 2), rel=1e-3)
