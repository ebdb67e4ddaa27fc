"""ScholarQABench: loaders for every subset, a resumable runner, and the benchmark's scorers."""

from eval.scholarqabench.loaders import TASKS, Example, TaskSpec, load_task, task_spec
from eval.scholarqabench.predictions import PredictionsError, read_predictions

__all__ = ["TASKS", "Example", "PredictionsError", "TaskSpec", "load_task", "read_predictions", "task_spec"]
