"""The tasks lnca restores for: one table, and everything else asks it.

A task says what a model is trained to undo (its training degradation, in degrade.py), how it is
scored by default (an eval degradation spec), which degradation kinds it answers (so a benchmark
spec finds its task), which peers make sense beside it, and its help text. Adding a task is one
`Task` entry here (or `register`) plus its degradation function; a task needs no published model
to exist (the registry's defaults say which tasks have one). Pure: no torch at import, so the CLI
can list the tasks for `--help` without loading it.
"""
from __future__ import annotations

from dataclasses import dataclass

from lnca_cli.errors import SettingsError


@dataclass(frozen=True)
class Task:
    name: str
    help: str  # one line, for --help and lnca models list
    training_degradation: str  # a function of degrade.py: (clean, generator) -> degraded, or (degraded, mask)
    eval_degradation: str  # the default spec of lnca eval and lnca bench steps
    degradation_kinds: tuple[str, ...]  # the spec kinds (before the ':') that this task undoes
    peer_kind: str  # which peers compare with it (bench peers' `kind`)

    def degrade_for_training(self, clean, generator):
        """A blind degradation for training: (degraded, mask of the corrupted pixels)."""
        from lnca_cli import degrade

        result = getattr(degrade, self.training_degradation)(clean, generator)
        if isinstance(result, tuple):
            return result
        return result, clean.new_ones((clean.shape[0], 1, *clean.shape[-2:]))

    def training_reach(self) -> int:
        """Pixels around each pixel that the training degradation reads: a blur's kernel radius, 0
        for noise (degrade.TRAINING_REACH)."""
        from lnca_cli import degrade

        return degrade.TRAINING_REACH.get(self.training_degradation, 0)


TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    """Add a task (or replace one of the same name); returns it."""
    TASKS[task.name] = task
    return task


register(Task("denoise", "blind denoising: Gaussian and camera (Poisson-Gaussian) noise", "random_noise",
              "gaussian:25", ("gaussian", "poisson"), "noise"))
register(Task("deblur", "blind deblurring: motion blur and defocus", "random_blur", "motion:7",
              ("motion", "defocus"), "blur"))
register(Task("denoise-masked", "the paper's masked noise (a share of the pixels corrupted)", "random_masked_noise",
              "masked:0.5", ("masked",), "noise"))


def get_task(name: str) -> Task:
    """The task of that name; an unknown name is a SettingsError listing the known ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise SettingsError(f"unknown task '{name}'; expected one of {', '.join(TASKS)}") from None


def task_for_degradation(spec: str) -> Task:
    """The task that undoes a degradation spec such as "motion:15"."""
    kind = spec.split(":", 1)[0].strip().lower()
    for task in TASKS.values():
        if kind in task.degradation_kinds:
            return task
    known = sorted(k for task in TASKS.values() for k in task.degradation_kinds)
    raise SettingsError(f"no task undoes degradation '{spec}'; known kinds: {', '.join(known)}")
