"""The Python API's core: `DistillationTrainingArguments` and `DistillationTrainer`.

- `arguments.py`: the knobs and their validation;
- `trainer.py`: the frozen teacher and `compute_loss`;
- `labels_trainer.py`: `LabelsTrainer`, training on labels alone with the same exact normalisation;
- `loss_terms.py`: the table of weighted loss terms `compute_loss` sums and `log` reports;
- `batch_counts.py`: the item counts of a whole accumulated batch that the terms are averaged over, and the
  trainer mixin that gathers them;
- `teacher.py`: placing the frozen teacher for each Accelerate engine;
- `compatibility.py`: the teacher/student checks (vocabulary, tokenizer, labels, head type);
- `model_inputs.py`: which inputs each model's forward takes.
"""

from .arguments import DistillationTrainingArguments
from .labels_trainer import LabelsTrainer
from .trainer import DistillationTrainer

__all__ = ["DistillationTrainer", "DistillationTrainingArguments", "LabelsTrainer"]
