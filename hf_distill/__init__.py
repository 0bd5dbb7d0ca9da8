"""hf-distill: distil large Hugging Face Transformers models into small fast students."""

from .arguments import DistillationTrainingArguments
from .trainer import DistillationTrainer

__version__ = "0.1.0"

__all__ = ["DistillationTrainer", "DistillationTrainingArguments", "__version__"]
