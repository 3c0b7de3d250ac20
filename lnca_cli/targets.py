"""The quality targets the shipped weights are held to (issue 12), for `lnca eval` to show beside its mean.

Denoising is held to CBM3D's published PSNR on the standard test sets (the DPIR/DRUNet paper, Table 3;
Zhang et al., TPAMI 2021), deblurring to a gain of 1.5 dB over the blurred input on Kodak24. A set is
known by its folder's name and its full image count, so a subset (`--limit`) or another folder of the
same name gets no target. Pure: no torch.
"""
from __future__ import annotations

from dataclasses import dataclass

STANDARD_SETS = {"CBSD68": 68, "Kodak24": 24}  # the sets with a target: name -> images
#: (set, degradation) -> (what the target is, its PSNR in dB, whether the PSNR must be above it, not just reach it)
DENOISE_TARGETS = {
    ("CBSD68", "gaussian:25"): ("CBM3D, published", 30.71, False),
    ("CBSD68", "gaussian:50"): ("CBM3D, published", 27.38, True),
    ("Kodak24", "gaussian:25"): ("CBM3D, published", 31.68, False),
}
DEBLUR_GAIN_DB = 1.5
DEBLUR_TARGETS = ("motion:7", "motion:15")  # on Kodak24


@dataclass(frozen=True)
class Target:
    what: str
    psnr: float
    strictly_above: bool
    reached: float  # the run's mean PSNR

    @property
    def met(self) -> bool:
        return self.reached > self.psnr if self.strictly_above else self.reached >= self.psnr

    def to_dict(self) -> dict:
        return {"what": self.what, "psnr": self.psnr, "strictly_above": self.strictly_above, "met": self.met,
                "margin_db": round(self.reached - self.psnr, 2)}

    def line(self) -> str:
        """One line for a terminal: the target, and whether the run met it."""
        sign = ">" if self.strictly_above else ">="
        verdict = "met" if self.met else "short"
        return f"target {sign} {self.psnr:.2f} dB ({self.what}): {self.reached:.2f}, {verdict} by " \
               f"{abs(self.reached - self.psnr):.2f} dB"


def targets_for(folder_name: str, images: int, degradation: str, psnr: float, psnr_input: float) -> list[Target]:
    """The targets that apply to a run of `images` images of the folder `folder_name` under
    `degradation`, given its mean PSNR (and the degraded input's)."""
    if STANDARD_SETS.get(folder_name) != images:
        return []
    spec = degradation.replace(" ", "").lower()
    if (folder_name, spec) in DENOISE_TARGETS:
        what, level, strict = DENOISE_TARGETS[folder_name, spec]
        return [Target(what, level, strict, psnr)]
    if folder_name == "Kodak24" and spec in DEBLUR_TARGETS:
        return [Target(f"the blurred input + {DEBLUR_GAIN_DB} dB", round(psnr_input + DEBLUR_GAIN_DB, 2), False, psnr)]
    return []
