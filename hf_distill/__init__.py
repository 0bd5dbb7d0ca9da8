"""hf-distill: distil large Hugging Face Transformers models into small fast students.

The package, by architectural part:

- `hf_distill.trainer`: the Python API's core: `DistillationTrainingArguments`, `DistillationTrainer` and its
  table of loss terms, the teacher's placement per engine, teacher/student compatibility checks; `LabelsTrainer`,
  the labels-only training (baselines, the teacher's fine-tune) with the same exact loss normalisation.
- `hf_distill.losses`: pure loss functions of tensors (logits, hidden states, attention, masks).
- `hf_distill.cache`: the teacher-output cache (store, fingerprint, collator, the trainer's side).
- `hf_distill.students`: building a student from a teacher (layer choice, BERT and DistilBERT mappings).
- `hf_distill.tasks`: GLUE, your own files, metrics: the data a student is trained and scored on.
- `hf_distill.publish`: what every entry point does after training: side-by-side evaluation, latency, model card,
  Hub push.
- `hf_distill.cli`: the plumbing the `scripts/distill_*.py` entry points share: argument and YAML parsing,
  refusals before loading, model loading, the distributed exit.
"""

from .students import build_student
from .trainer import DistillationTrainer, DistillationTrainingArguments, LabelsTrainer

__version__ = "0.1.0"

__all__ = ["DistillationTrainer", "DistillationTrainingArguments", "LabelsTrainer", "__version__", "build_student"]
