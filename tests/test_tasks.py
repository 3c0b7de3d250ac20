"""The task table: every task is one entry, and a new one works without a published model."""
import pytest
import torch

from lnca_cli.errors import SettingsError
from lnca_cli.hub import WeightsError, load_model, load_registry
from lnca_cli.tasks import TASKS, Task, get_task, register, task_for_degradation
from lnca_cli.train import degrade_for_task


def test_every_shipped_task_has_a_default_model_and_a_default_degradation_that_it_undoes():
    registry = load_registry()
    for task in TASKS.values():
        assert registry.models[registry.defaults[task.name]].task == task.name
        assert task_for_degradation(task.eval_degradation) is task


def test_degradation_specs_find_their_task():
    assert task_for_degradation("poisson:30").name == "denoise"
    assert task_for_degradation("defocus:1.5").name == "deblur"
    with pytest.raises(SettingsError, match="no task undoes degradation 'jpeg:30'"):
        task_for_degradation("jpeg:30")
    with pytest.raises(SettingsError, match="unknown task 'sharpen'; expected one of denoise, deblur"):
        get_task("sharpen")


@pytest.fixture
def new_task():
    task = register(Task("denoise-light", "light Gaussian noise only", "random_noise", "gaussian:5", ("light",),
                         "noise"))
    yield task
    del TASKS[task.name]


def test_a_task_without_a_published_model_can_be_registered_and_trained_for(new_task):
    clean = torch.rand(2, 3, 16, 16)
    degraded, mask = degrade_for_task("denoise-light", clean, torch.Generator().manual_seed(0))
    assert degraded.shape == clean.shape and mask.shape == (2, 1, 16, 16) and not torch.equal(degraded, clean)
    load_registry()  # the registry stays valid: a task needs no default model
    with pytest.raises(WeightsError, match="task 'denoise-light' has no published model yet"):
        load_model(None, "denoise-light")
