"""PSNR, SSIM, colour bias and colour mottle: pure, differentiable functions of torch tensors.

Each takes two image batches of the same shape (N, C, H, W) and return one score per image, shape
(N,). The standard protocol scores 8-bit images: pass both through ``quantize8`` first.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03

MOTTLE_SCALE = 4.0  # px: the std of the low-pass that keeps blotches and drops pixel-level noise
MOTTLE_WINDOW = 15  # px: the side of the window whose luminance std says how flat a place is
MOTTLE_FLAT_FRACTION = 0.2  # the flattest fifth of the clean image is where mottle is scored
MOTTLE_PROTOCOL = (f"the RMS colour error after a Gaussian low-pass of std {MOTTLE_SCALE:g} px, over the "
                   f"{MOTTLE_FLAT_FRACTION:.0%} of the clean image flattest in luminance over {MOTTLE_WINDOW} px, "
                   "in 8-bit levels (metrics.colour_mottle)")


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.dim() != 4 or x.shape != y.shape:
        raise ValueError(
            f"expected two image batches of the same shape (N, C, H, W), got {tuple(x.shape)} and {tuple(y.shape)}"
        )


def quantize8(x: torch.Tensor) -> torch.Tensor:
    """Round images in [0, 1] to the nearest of 256 levels, as saving them as 8-bit would."""
    return torch.round(x.clamp(0.0, 1.0) * 255.0) / 255.0


def channel_bias(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean signed error of x against y per image and channel, in 8-bit levels: (N, C). A colour
    shift shows here (a restore 3 levels too dark in red: -3 in channel 0) when PSNR hides it."""
    _check_pair(x, y)
    return 255.0 * (x - y).mean(dim=(2, 3))


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image, over all channels and pixels.

    Identical images score ``inf``.
    """
    _check_pair(x, y)
    mse = (x - y).pow(2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(data_range**2 / mse)


def _gaussian_taps(size: int, sigma: float, like: torch.Tensor) -> torch.Tensor:
    """A normalised 1-D Gaussian of `size` taps and std `sigma`, in the dtype and on the device of ``like``."""
    coords = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2
    taps = torch.exp(-(coords**2) / (2 * sigma**2))
    return taps / taps.sum()


def _gaussian_window(size: int, like: torch.Tensor) -> torch.Tensor:
    """SSIM's normalised (size, size) Gaussian window of std SSIM_SIGMA."""
    taps = _gaussian_taps(size, SSIM_SIGMA, like)
    return taps[:, None] * taps[None, :]


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Structural similarity per image (Wang et al., 2004), averaged over channels and pixels.

    The standard settings: an 11x11 Gaussian window of std 1.5, K1 = 0.01, K2 = 0.03, population
    (not sample) covariances, each channel separately, and only where the window fits inside the
    image (no padding). This matches MATLAB's ``ssim`` and scikit-image's
    ``structural_similarity(x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    data_range=data_range, channel_axis=...)``. For images smaller than 11 pixels the window
    shrinks to the largest odd size that fits, keeping std 1.5.
    """
    _check_pair(x, y)
    n, c, h, w = x.shape
    size = min(SSIM_WINDOW, h, w)
    size -= 1 - size % 2  # largest odd size that fits
    window = _gaussian_window(size, x).expand(5 * c, 1, size, size)
    # Local means of x, y, x^2, y^2 and xy, all in one grouped convolution.
    stats = F.conv2d(torch.cat([x, y, x * x, y * y, x * y], dim=1), window, groups=5 * c)
    mu_x, mu_y, mean_xx, mean_yy, mean_xy = stats.split(c, dim=1)
    var_x = mean_xx - mu_x**2
    var_y = mean_yy - mu_y**2
    cov_xy = mean_xy - mu_x * mu_y
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.flatten(1).mean(dim=1)


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """A separable Gaussian low-pass of std `sigma` px, borders by reflection (N, C, H, W)."""
    radius = min(int(3 * sigma), x.shape[-2] - 1, x.shape[-1] - 1)  # reflection needs less than the side
    taps = _gaussian_taps(2 * radius + 1, sigma, x).repeat(x.shape[1], 1, 1, 1)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), taps, groups=x.shape[1])
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), taps.transpose(-1, -2), groups=x.shape[1])


def _opponent_chroma(x: torch.Tensor) -> torch.Tensor:
    """The two colour-difference planes of RGB images, orthonormal to luminance: (N, 2, H, W)."""
    r, g, b = x.unbind(dim=1)
    return torch.stack([(r - g) / 2**0.5, (r + g - 2 * b) / 6**0.5], dim=1)


def _flattest(clean: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) of 0/1: the MOTTLE_FLAT_FRACTION of each image's pixels whose neighbourhood
    (MOTTLE_WINDOW px) varies least in luminance: skies, walls, skin."""
    luma = clean.mean(dim=1, keepdim=True)
    mean = F.avg_pool2d(luma, MOTTLE_WINDOW, 1, MOTTLE_WINDOW // 2, count_include_pad=False)
    mean_sq = F.avg_pool2d(luma**2, MOTTLE_WINDOW, 1, MOTTLE_WINDOW // 2, count_include_pad=False)
    local_var = (mean_sq - mean**2).flatten(1)
    k = max(1, round(MOTTLE_FLAT_FRACTION * local_var.shape[1]))
    threshold = local_var.kthvalue(k, dim=1, keepdim=True).values
    return (local_var <= threshold).float().view_as(luma)


def colour_mottle(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Colour mottle of x against the clean y per image, in 8-bit levels: (N,).

    The blotchy colour noise a denoiser can leave in skies and walls, which PSNR barely sees: the
    RMS of the colour difference of x and y after a low-pass (MOTTLE_SCALE), over the flattest
    fifth of y (MOTTLE_FLAT_FRACTION). Pixel-level noise averages out in the low-pass and a uniform
    shift of brightness has no colour; a uniform colour shift counts (channel_bias sees it alone).
    Grayscale images have no colour: 0.
    """
    _check_pair(x, y)
    if x.shape[1] == 1:
        return x.new_zeros(x.shape[0])
    error = _blur(_opponent_chroma(x - y), MOTTLE_SCALE)  # the planes are linear: the colour of the difference
    flat = _flattest(y)
    squares = (error**2 * flat).flatten(1).sum(dim=1) / (2 * flat.flatten(1).sum(dim=1))
    return 255.0 * squares.sqrt()
