"""The NB201 benchmark tasks: which accuracy column each one reads, and its chance level."""
from __future__ import annotations

from modnas.toolkit.errors import BadInput

# task name (as the command line spells it) -> column of nb201/nb201_accuracy.csv.gz (200-epoch test accuracy)
TASK_COLUMNS: dict[str, str] = {
    "cifar10": "cifar10_test_200ep",
    "cifar100": "cifar100_test_200ep",
    "imagenet16-120": "imagenet16_120_test_200ep",
}
# the column-name prefix of each task (every fidelity and split of a task shares it)
_PREFIXES: dict[str, str] = {"cifar10": "cifar10_", "cifar100": "cifar100_", "imagenet16-120": "imagenet16_120_"}
CHANCE_ACCURACY: dict[str, float] = {"cifar10": 10.0, "cifar100": 1.0, "imagenet16-120": 100.0 / 120.0}
DEFAULT_TASK = "cifar10"


def task_column(task: str) -> str:
    """The accuracy column of ``task``; an unknown task is bad input naming the known ones."""
    if task not in TASK_COLUMNS:
        raise BadInput(f"unknown task {task!r}; known: {', '.join(TASK_COLUMNS)}")
    return TASK_COLUMNS[task]


def task_of_column(column: str) -> str | None:
    """The task an accuracy column belongs to (``cifar10_test_12ep`` -> ``cifar10``); None when none does."""
    for task, prefix in _PREFIXES.items():
        if column.startswith(prefix):
            return task
    return None


__all__ = ["CHANCE_ACCURACY", "DEFAULT_TASK", "TASK_COLUMNS", "task_column", "task_of_column"]
