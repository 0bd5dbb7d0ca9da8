"""`scripts/distill_glue.py --student_training labels_only` with a plain transformers `Trainer` in place of
`LabelsTrainer`: the baseline as transformers 5 trains it, kept to measure what its loss scaling costs (README,
"Python API", the paragraph "The baseline to beat"). Every argument goes to distill_glue.py unchanged, e.g.

    python benchmarks/plain_trainer.py configs/offline/sst2.yaml --data_dir ../shared/data/glue --seed 42 \\
        --teacher_model_name_or_path outputs/results/sst2/seed42/ours/teacher --finetune_teacher false \\
        --student_training labels_only --per_device_train_batch_size 8 --gradient_accumulation_steps 4 \\
        --output_dir outputs/check/ga_plain

Not part of the library; the same command through `scripts/distill_glue.py` is the LabelsTrainer side.
"""

from __future__ import annotations

import sys
from pathlib import Path

import transformers

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

import distill_glue  # noqa: E402

import hf_distill.cli.training as training  # noqa: E402
from hf_distill.cli.entry import run_entry_point  # noqa: E402

if __name__ == "__main__":
    training.LabelsTrainer = transformers.Trainer  # make_trainer's labels_only / pseudo_labels trainer
    # as distill_glue.py runs: bad input is one line and exit 2, and a distributed run ends on every rank
    run_entry_point(lambda: distill_glue.main(sys.argv[1:]), "plain_trainer.py")
