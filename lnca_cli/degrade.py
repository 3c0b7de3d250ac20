"""Noise and blur, seeded: pure functions of torch tensors.

Images are float tensors in [0, 1] of shape (N, C, H, W); every function takes and returns a batch.
Randomness comes only from the explicit ``torch.Generator`` argument, which must live on the
images' device, so a degradation is reproduced exactly by reseeding the generator.

Noise levels called ``sigma`` are on the 0-255 scale (sigma 25 means a standard deviation of
25/255), as in the denoising literature. Parameters documented as "per image" take a float or a
tensor of shape (N,).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from lnca_cli.errors import SettingsError

Degradation = Callable[[torch.Tensor, torch.Generator], torch.Tensor]

MASK_NOISE_STD = 0.2  # the paper's N(0, 0.2) at corrupted pixels
TRAINING_MOTION_LENGTHS = (3, 21)  # random_blur's motion blur lengths in pixels, both included
TRAINING_DEFOCUS_SIGMAS = (0.5, 2.0)  # ... and its defocus blur's sigmas
#: Pixels around each pixel that a training degradation reads (its widest kernel's radius); the
#: degradations not listed read none. lnca train --degrade-before-crop cuts crops this much larger.
TRAINING_REACH = {"random_blur": max(TRAINING_MOTION_LENGTHS[1] // 2, math.ceil(3 * TRAINING_DEFOCUS_SIGMAS[1]))}


def _check_batch(x: torch.Tensor) -> None:
    if x.dim() != 4:
        raise ValueError(f"expected an image batch of shape (N, C, H, W), got shape {tuple(x.shape)}")


def _per_image(value: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A float or an (N,) tensor as an (N, 1, 1, 1) tensor that broadcasts over the batch ``x``."""
    value = torch.as_tensor(value, dtype=x.dtype, device=x.device)
    if value.dim() == 0:
        value = value.expand(x.shape[0])
    if value.shape != (x.shape[0],):
        raise ValueError(f"expected a float or a tensor of shape ({x.shape[0]},), got shape {tuple(value.shape)}")
    return value.view(-1, 1, 1, 1)


def _uniform(n: int, low: float, high: float, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """n draws from U[low, high), on the device and in the dtype of ``like``."""
    u = torch.rand(n, generator=generator, device=like.device, dtype=like.dtype)
    return low + (high - low) * u


def masked_noise(
    x: torch.Tensor, p: float | torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's masked noise: corrupt each pixel with probability ``p`` (per image).

    One mask is shared by all channels, and one N(0, 0.2) value per corrupted pixel is added to
    all its channels; the result is clipped to [0, 1]. Returns (degraded, mask), the mask being
    (N, 1, H, W) with 1 at corrupted pixels and 0 elsewhere.
    """
    _check_batch(x)
    n, _, h, w = x.shape
    mask = torch.rand(n, 1, h, w, generator=generator, device=x.device, dtype=x.dtype) < _per_image(p, x)
    mask = mask.to(x.dtype)
    noise = MASK_NOISE_STD * torch.randn(n, 1, h, w, generator=generator, device=x.device, dtype=x.dtype)
    return (x + mask * noise).clamp(0.0, 1.0), mask


def gaussian_noise(
    x: torch.Tensor, sigma: float | torch.Tensor, generator: torch.Generator, clip: bool = False
) -> torch.Tensor:
    """Additive white Gaussian noise of std ``sigma``/255 (per image), independent per channel and pixel.

    Not clipped by default: the standard denoising benchmarks add the noise in floating point.
    """
    _check_batch(x)
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    noisy = x + noise * _per_image(sigma, x) / 255.0
    return noisy.clamp(0.0, 1.0) if clip else noisy


def poisson_gaussian_noise(
    x: torch.Tensor,
    peak: float | torch.Tensor,
    sigma: float | torch.Tensor,
    generator: torch.Generator,
    clip: bool = True,
) -> torch.Tensor:
    """Signal-dependent camera noise: Poisson shot noise plus Gaussian read noise.

    White collects ``peak`` photons on average (per image): ``Poisson(x * peak) / peak``, so a lower
    peak is noisier. Gaussian noise of std ``sigma``/255 (per image) is added on top. Clipped to
    [0, 1] by default, unlike ``gaussian_noise``, because this model stands for real sensor data,
    which is clipped.
    """
    _check_batch(x)
    peak = _per_image(peak, x)
    photons = torch.poisson(x.clamp(0.0, 1.0) * peak, generator=generator)
    return gaussian_noise(photons / peak, sigma, generator, clip=clip)


def motion_blur_kernel(length: int, angle_degrees: float) -> torch.Tensor:
    """The paper's linear motion blur: a (length, length) kernel whose middle row is ones, rotated.

    The row of ones is row ``length // 2`` (for an even length it lies half a pixel below the
    centre, as in the paper's construction). It is rotated counter-clockwise by ``angle_degrees``
    about the kernel's centre, sampling the unrotated kernel bilinearly (zero outside), so that
    lines at any angle are anti-aliased; 0 degrees is horizontal and 90 vertical. Sums to 1.
    """
    if length < 1:
        raise ValueError(f"motion blur length must be at least 1, got {length}")
    centre = (length - 1) / 2
    theta = math.radians(angle_degrees)
    coords = torch.arange(length, dtype=torch.float64) - centre
    dy, dx = torch.meshgrid(coords, coords, indexing="ij")
    # Rotate each kernel pixel back into the unrotated frame (image y points down).
    u = dx * math.cos(theta) - dy * math.sin(theta) + centre
    v = dx * math.sin(theta) + dy * math.cos(theta) + centre
    # Bilinear sample of the unrotated kernel: a tent across the row, and along it a run of ones
    # over columns 0..length-1 that falls linearly to zero within one pixel beyond either end.
    across = (1 - (v - length // 2).abs()).clamp(min=0)
    along = (1 - (u.clamp(0, length - 1) - u).abs()).clamp(min=0)
    kernel = across * along
    return (kernel / kernel.sum()).float()


def gaussian_blur_kernel(sigma: float) -> torch.Tensor:
    """Defocus blur: an isotropic Gaussian of std ``sigma`` pixels, size 2*ceil(3 sigma)+1, sum 1."""
    if sigma <= 0:
        raise ValueError(f"defocus sigma must be positive, got {sigma}")
    radius = math.ceil(3 * sigma)
    coords = torch.arange(-radius, radius + 1, dtype=torch.float64)
    taps = torch.exp(-(coords**2) / (2 * sigma**2))
    kernel = taps[:, None] * taps[None, :]
    return (kernel / kernel.sum()).float()


def blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Convolve each channel with ``kernel``: (k, k) for the whole batch or (N, k, k) per image.

    A true convolution (the kernel is flipped), with reflect padding so the output has the input's
    size; reflect padding needs images larger than half the kernel on each side.
    """
    _check_batch(x)
    n, c, h, w = x.shape
    k = kernel.shape[-1]
    if kernel.shape not in ((k, k), (n, k, k)):
        raise ValueError(f"expected a kernel of shape (k, k) or ({n}, k, k), got shape {tuple(kernel.shape)}")
    kernels = kernel.to(x).expand(n, k, k)
    # One group per (image, channel): fold the batch into the channels.
    weight = kernels.flip(-2, -1).repeat_interleave(c, dim=0).unsqueeze(1)
    padded = F.pad(x.reshape(1, n * c, h, w), ((k - 1) // 2, k // 2, (k - 1) // 2, k // 2), mode="reflect")
    return F.conv2d(padded, weight, groups=n * c).reshape(n, c, h, w)


def random_noise(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Blind denoising training noise, drawn per image.

    Half the images get Gaussian noise with sigma ~ U[0, 50], unclipped as in the benchmark
    protocol. The others get clipped Poisson-Gaussian noise like a real camera's: peak
    log-uniform in [10, 1000] photons (shot noise at mid-grey of about sigma 57 down to 6) plus
    read noise with sigma ~ U[0, 25].
    """
    _check_batch(x)
    n = x.shape[0]
    use_camera = torch.rand(n, generator=generator, device=x.device) < 0.5
    gaussian = gaussian_noise(x, _uniform(n, 0.0, 50.0, generator, x), generator)
    peak = torch.exp(_uniform(n, math.log(10.0), math.log(1000.0), generator, x))
    camera = poisson_gaussian_noise(x, peak, _uniform(n, 0.0, 25.0, generator, x), generator)
    return torch.where(use_camera.view(-1, 1, 1, 1), camera, gaussian)


def random_blur(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Blind deblurring training blur, drawn per image.

    With probability 0.3 a mild Gaussian defocus (sigma ~ U[0.5, 2]), otherwise motion blur with
    length ~ U{3..21} and angle ~ U[0, 360). Then a little Gaussian noise (sigma ~ U[0, 2]), as
    real blurry photographs have, clipped to [0, 1] like a photograph.
    """
    _check_batch(x)
    n = x.shape[0]
    defocus = torch.rand(n, generator=generator, device=x.device) < 0.3
    defocus_sigmas = _uniform(n, *TRAINING_DEFOCUS_SIGMAS, generator, x)
    lengths = torch.randint(TRAINING_MOTION_LENGTHS[0], TRAINING_MOTION_LENGTHS[1] + 1, (n,), generator=generator,
                            device=x.device)
    angles = _uniform(n, 0.0, 360.0, generator, x)
    blurred = []
    for i in range(n):
        if defocus[i]:
            kernel = gaussian_blur_kernel(defocus_sigmas[i].item())
        else:
            kernel = motion_blur_kernel(int(lengths[i]), angles[i].item())
        blurred.append(blur(x[i : i + 1], kernel))
    return gaussian_noise(torch.cat(blurred), _uniform(n, 0.0, 2.0, generator, x), generator, clip=True)


def random_masked_noise(
    x: torch.Tensor, generator: torch.Generator, p_range: tuple[float, float] = (0.25, 0.75)
) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's masked noise with p ~ U[p_range] per image; returns (degraded, mask)."""
    _check_batch(x)
    p = _uniform(x.shape[0], *p_range, generator, x)
    return masked_noise(x, p, generator)


def _gaussian(sigma: float) -> Degradation:
    if sigma < 0:
        raise ValueError("sigma must be >= 0")
    return lambda x, generator: gaussian_noise(x, sigma, generator)


def _poisson(peak: float, sigma: float = 0.0) -> Degradation:
    if peak <= 0 or sigma < 0:
        raise ValueError("peak must be > 0 and sigma >= 0")
    return lambda x, generator: poisson_gaussian_noise(x, peak, sigma, generator)


def _masked(p: float) -> Degradation:
    if not 0 <= p <= 1:
        raise ValueError("p must be in [0, 1]")
    return lambda x, generator: masked_noise(x, p, generator)[0]


def _motion(length: float, angle: float | None = None) -> Degradation:
    if length != int(length) or length < 1:
        raise ValueError("length must be a whole number >= 1")
    if angle is not None:
        kernel = motion_blur_kernel(int(length), angle)
        return lambda x, generator: blur(x, kernel)

    def random_angle(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        angles = _uniform(x.shape[0], 0.0, 360.0, generator, x)
        return blur(x, torch.stack([motion_blur_kernel(int(length), a.item()) for a in angles]))

    return random_angle


def _defocus(sigma: float) -> Degradation:
    if sigma <= 0:
        raise ValueError("sigma must be > 0")
    return lambda x, generator: blur(x, gaussian_blur_kernel(sigma))


# name -> (the spec's form, how many numbers it takes at least and at most, builder)
_SPECS: dict[str, tuple[str, int, int, Callable[..., Degradation]]] = {
    "gaussian": ("gaussian:SIGMA", 1, 1, _gaussian),
    "poisson": ("poisson:PEAK[:SIGMA]", 1, 2, _poisson),
    "masked": ("masked:P", 1, 1, _masked),
    "motion": ("motion:LENGTH[:ANGLE]", 1, 2, _motion),
    "defocus": ("defocus:SIGMA", 1, 1, _defocus),
}


def parse_degradation(spec: str) -> Degradation:
    """Parse a CLI spec such as "gaussian:25" into a callable ``(x, generator) -> degraded``.

    Forms: gaussian:SIGMA, poisson:PEAK[:SIGMA], masked:P, motion:LENGTH[:ANGLE] (the angle is
    drawn per image from the generator when left out), defocus:SIGMA. Sigmas are on the 0-255
    scale except defocus's, which is in pixels. Raises ValueError with a one-line message.
    """
    name, *args = spec.strip().split(":")
    if name not in _SPECS:
        raise SettingsError(f"unknown degradation {name!r}; expected one of {', '.join(_SPECS)}")
    form, fewest, most, build = _SPECS[name]
    try:
        if not fewest <= len(args) <= most:
            raise ValueError(f"takes {fewest} to {most} numbers" if fewest < most else f"takes {fewest} number")
        values = [float(arg) for arg in args]
        if not all(math.isfinite(value) for value in values):
            raise ValueError("numbers must be finite")
        return build(*values)
    except ValueError as error:
        raise SettingsError(f"bad degradation {spec!r}: {error}; expected {form}") from None
