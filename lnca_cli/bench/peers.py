"""The tools users pick instead of lnca, behind one signature, for `lnca bench quality`.

Each peer restores an (H, W, C) float64 image (C = 1 or 3, values about [0, 1]) and returns one of
the same shape. Noise peers are told the noise's standard deviation `sigma` (on the [0, 1] scale):
they are non-blind, so they get the true level, their best case, as published figures do (lnca is
blind). Blur peers are given the true blur kernel; lnca gets nothing. Every parameter is the
library's documented default or the usual rule of thumb written beside it; none was tuned on the
test images. The peers are optional (`pip install "lnca[bench]"`): a missing one is reported, never
imported by the tool itself.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass
from typing import Callable

import numpy as np

PeerFunction = Callable[[np.ndarray, "float | None", "np.ndarray | None"], np.ndarray]


@dataclass(frozen=True)
class Peer:
    name: str  # as shown in the tables
    kind: str  # "noise" or "blur": which degradations it is run on
    module: str  # what must be importable
    package: str  # its pip distribution, for the version and the "not installed" hint
    settings: str  # the parameters used, for the report
    run: PeerFunction


def available(peer: Peer) -> bool:
    return importlib.util.find_spec(peer.module) is not None


def version(peer: Peer) -> str | None:
    try:
        return importlib.metadata.version(peer.package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)


#: OpenCV NL-means strength h per unit of noise sigma (0-255 scale), chosen on lnca's training pool
#: (see PEERS).
OPENCV_STRENGTH = 0.7


def _opencv_nlm(image: np.ndarray, sigma: float | None, kernel: np.ndarray | None) -> np.ndarray:
    import cv2

    h = OPENCV_STRENGTH * 255 * sigma  # filter strength on the 0-255 scale
    pixels = _to_uint8(image)  # OpenCV's non-local means takes 8-bit images
    if image.shape[2] == 1:
        return cv2.fastNlMeansDenoising(pixels[..., 0], None, h, 7, 21)[..., None] / 255.0
    bgr = np.ascontiguousarray(pixels[..., ::-1])  # OpenCV's colour conversion expects BGR
    return cv2.fastNlMeansDenoisingColored(bgr, None, h, h, 7, 21)[..., ::-1] / 255.0


def _bm3d(image: np.ndarray, sigma: float | None, kernel: np.ndarray | None) -> np.ndarray:
    import bm3d

    if image.shape[2] == 1:
        return bm3d.bm3d(image[..., 0], sigma)[..., None]
    return bm3d.bm3d_rgb(image, sigma)


def _nl_means(image: np.ndarray, sigma: float | None, kernel: np.ndarray | None) -> np.ndarray:
    from skimage.restoration import denoise_nl_means

    return denoise_nl_means(image, h=0.8 * sigma, sigma=sigma, patch_size=5, patch_distance=6, fast_mode=True,
                            channel_axis=-1).reshape(image.shape)


def _wavelet(image: np.ndarray, sigma: float | None, kernel: np.ndarray | None) -> np.ndarray:
    from skimage.restoration import denoise_wavelet

    return denoise_wavelet(image, method="BayesShrink", mode="soft", rescale_sigma=True,
                           convert2ycbcr=image.shape[2] == 3, channel_axis=-1).reshape(image.shape)


def _tv_chambolle(image: np.ndarray, sigma: float | None, kernel: np.ndarray | None) -> np.ndarray:
    from skimage.restoration import denoise_tv_chambolle

    return denoise_tv_chambolle(image, weight=sigma, channel_axis=-1).reshape(image.shape)


def _per_channel(deconvolve: Callable[[np.ndarray], np.ndarray], image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """scikit-image's deconvolutions take one 2-D channel at a time, and treat the outside as zero (or
    wrap around): pad by reflection, as the blur was made, and crop back, so that borders do not ring."""
    pad = kernel.shape[0]
    padded = np.pad(np.clip(image, 0, 1), ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    channels = [deconvolve(padded[..., c])[pad:-pad, pad:-pad] for c in range(image.shape[2])]
    return np.stack(channels, axis=-1)


def _richardson_lucy(image: np.ndarray, sigma: float | None, kernel: np.ndarray | None) -> np.ndarray:
    from skimage.restoration import richardson_lucy

    return _per_channel(lambda channel: richardson_lucy(channel, kernel, num_iter=30), image, kernel)


def _wiener(image: np.ndarray, sigma: float | None, kernel: np.ndarray | None) -> np.ndarray:
    from skimage.restoration import unsupervised_wiener

    return _per_channel(lambda channel: unsupervised_wiener(channel, kernel, rng=0)[0], image, kernel)


PEERS = (
    Peer("opencv-nlm", "noise", "cv2", "opencv-python-headless",
         "fastNlMeansDenoisingColored on 8 bits, h = hColor = 0.7 sigma (0-255; the best of 0.4-1.2 sigma, mean "
         "over sigma 15/25/50, on 256 px crops of 8 photos of lnca's training pool), 7x7 patches, 21x21 search",
         _opencv_nlm),
    Peer("bm3d", "noise", "bm3d", "bm3d", "bm3d_rgb (opponent colour space), sigma_psd = sigma, profile 'np'", _bm3d),
    Peer("skimage-nl-means", "noise", "skimage", "scikit-image",
         "denoise_nl_means, h = 0.8 sigma, patch 5, distance 6, fast mode", _nl_means),
    Peer("skimage-wavelet", "noise", "skimage", "scikit-image",
         "denoise_wavelet, BayesShrink, soft, YCbCr, sigma estimated by skimage", _wavelet),
    Peer("skimage-tv", "noise", "skimage", "scikit-image", "denoise_tv_chambolle, weight = sigma", _tv_chambolle),
    Peer("skimage-richardson-lucy", "blur", "skimage", "scikit-image",
         "richardson_lucy per channel with the true kernel, 30 iterations, reflect-padded", _richardson_lucy),
    Peer("skimage-wiener", "blur", "skimage", "scikit-image",
         "unsupervised_wiener per channel with the true kernel, rng 0, reflect-padded", _wiener),
)
