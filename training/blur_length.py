"""Can a motion blur's length be read off a whole blurred photo? A check for issue 12's next step (a
deblurrer told its blur's length, training/README.md), not part of lnca yet.

A linear motion blur of length L multiplies the photo's spectrum by a sinc whose zeros repeat every
1/L; the cepstrum (the inverse transform of the log spectrum) turns that repetition into a dip at
distance L from the origin, in the blur's direction (Cannon, 1976). This takes the deepest dip of the
grayscale photo's cepstrum between 2.5 and 26 pixels and reports its distance, for every photo of a
folder blurred as `lnca eval` blurs it (motion:L, a random angle per photo, seed = the photo's index)
plus a little Gaussian noise (sigma 1 level; training draws it in [0, 2]). The dip's depth (in
median absolute deviations of the cepstrum around it) is a confidence: it is also reported for the
photos sharp and defocused, where there is no length to find.

    python training/blur_length.py /work/data/arms/validation [--lengths 3,5,7,11,15,21]
"""
from __future__ import annotations

import argparse

import torch

from lnca_cli.degrade import gaussian_noise, parse_degradation
from lnca_cli.evaluate import image_files
from lnca_cli.images import read_image

SEARCH_RADIUS = 26  # pixels: past the training's longest blur (21)
INNER_RADIUS = 2.5  # pixels: the cepstrum's peak at the origin hides anything closer


def estimate_length(image: torch.Tensor) -> tuple[float, float]:
    """(length, depth) of the deepest dip of the cepstrum of a (C, H, W) image: its motion blur's
    length, and how far the dip falls below the cepstrum around it, in median absolute deviations."""
    gray = image.mean(dim=0).double()
    height, width = gray.shape
    window = torch.outer(torch.hann_window(height, dtype=torch.float64), torch.hann_window(width, dtype=torch.float64))
    spectrum = torch.fft.fft2((gray - gray.mean()) * window)
    cepstrum = torch.fft.fftshift(torch.fft.ifft2(torch.log(spectrum.abs() + 1e-3)).real)
    r = SEARCH_RADIUS
    around = cepstrum[height // 2 - r: height // 2 + r + 1, width // 2 - r: width // 2 + r + 1]
    offsets = torch.arange(-r, r + 1, dtype=torch.float64)
    distance = (offsets[:, None] ** 2 + offsets[None, :] ** 2).sqrt()
    ring = (distance >= INNER_RADIUS) & (distance <= r)
    values = around[ring]
    middle = values.median()
    spread = (values - middle).abs().median()
    return float(distance[ring][values.argmin()]), float((middle - values.min()) / spread)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--lengths", default="3,5,7,11,15,21")
    args = parser.parse_args()
    photos = [read_image(path)[0] for path in image_files(args.folder)]
    print(f"{len(photos)} photos; estimated length per true length (within 1.5 px: the share of photos), "
          "and the dip's depth")
    for spec in [f"motion:{n}" for n in args.lengths.split(",")] + ["none", "defocus:1", "defocus:2"]:
        estimates = []
        for index, clean in enumerate(photos):
            generator = torch.Generator().manual_seed(index)
            blurred = clean[None] if spec == "none" else parse_degradation(spec)(clean[None], generator)
            estimates.append(estimate_length(gaussian_noise(blurred, 1.0, generator, clip=True)[0]))
        lengths, depths = torch.tensor(estimates).T
        line = f"{spec:10s} depth median {depths.median().item():5.1f}, min {depths.min().item():4.1f}, " \
               f"max {depths.max().item():5.1f}"
        if spec.startswith("motion:"):
            errors = lengths - float(spec.split(":")[1])
            line += (f"; length error median {errors.median().item():+.2f} px, within 1.5 px "
                     f"{(errors.abs() <= 1.5).float().mean().item():.0%}, worst {errors.abs().max().item():.1f} px")
        print(line)

if __name__ == "__main__":
    main()
