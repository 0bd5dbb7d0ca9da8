"""What the intermediate-layer terms cost per training step, and what keeping SDPA saves.

    python scripts/benchmark_intermediate.py                 # real all-MiniLM-L6-v2 teacher, real SST-2 sentences
    python scripts/benchmark_intermediate.py --smoke         # 2 steps: checks the script, times nothing

Every row is `DistillationTrainer.compute_loss` plus the backward pass over the same batches (32 real SST-2
training sentences each, up to 64 tokens, the teacher online), side by side in one process and interleaved over
`--repeats` rounds (rotated, so none always runs first); the table reports medians and ratios against the first row.
The attention and value-relation terms get the last layer's attention without giving up SDPA: hooks keep that
layer's query/key/value outputs and the loss recomputes its softmax(QK^T / sqrt(d)) (`trainer/intermediate.py`).
The alternative is to run both models with eager attention; the "eager" row is that switch alone, with no term on
(a lower bound of its cost: the alternative would also return and compare the probabilities).

Writes nothing.
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import DataCollatorWithPadding

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from benchmark_transfer import load  # noqa: E402

from benchmarks.arguments import positive_int, refuse_sizes_with_smoke  # noqa: E402
from hf_distill import DistillationTrainer, DistillationTrainingArguments, build_student  # noqa: E402

ROWS = {
    "logits only (SDPA)": {},
    "+ hidden states, uniform map": {"alpha_hidden": 1.0},
    "+ attention & value relations (SDPA kept, last layer recomputed)": {
        "alpha_attention": 1.0,
        "alpha_value_relation": 1.0,
    },
    "+ all three": {"alpha_hidden": 1.0, "alpha_attention": 1.0, "alpha_value_relation": 1.0},
    "logits only, both models switched to eager attention": {"eager": True},
}


def make_trainer(teacher, student, rows, collator, folder: str, settings: dict) -> DistillationTrainer:
    settings = dict(settings)
    # Its own teacher: the attention terms hook the teacher's last layer, and a shared teacher would run those hooks
    # in every other row's steps too.
    teacher = copy.deepcopy(teacher)
    if settings.pop("eager", False):  # the student is already this row's own copy
        for model in (teacher, student):
            model.set_attn_implementation("eager")
            if model.config._attn_implementation != "eager":
                raise SystemExit(f"could not switch {type(model).__name__} to eager attention")
    args = DistillationTrainingArguments(
        output_dir=folder,
        per_device_train_batch_size=32,
        temperature=1.0,
        alpha_kd=0.9,
        alpha_task=0.1,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
        **settings,
    )
    return DistillationTrainer(
        model=student, teacher_model=teacher, args=args, train_dataset=rows, data_collator=collator
    )


def time_steps(trainer: DistillationTrainer, batches: list[dict]) -> float:
    student = trainer.model
    student.train()
    start = time.perf_counter()
    for batch in batches:
        loss = trainer.compute_loss(student, dict(batch))
        loss.backward()
        student.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=positive_int, help="batches of 32 per round (default 30)")
    parser.add_argument("--repeats", type=positive_int, help="rounds (default 3)")
    parser.add_argument("--smoke", action="store_true")
    options = parser.parse_args()
    refuse_sizes_with_smoke(parser, options, "steps", "repeats")
    if options.smoke:
        options.steps, options.repeats = 2, 1
    options.steps, options.repeats = options.steps or 30, options.repeats or 3
    teacher, tokenizer, rows = load(32 * options.steps, 64)
    rows = rows.map(lambda row: {"labels": row["input_ids"][1] % 2})  # some labels: the task term runs too
    collator = DataCollatorWithPadding(tokenizer)
    batches = [collator([rows[i] for i in range(start, start + 32)]) for start in range(0, len(rows), 32)]
    student = build_student(teacher, layers=[0, 2, 4])
    seconds = {name: [] for name in ROWS}
    with tempfile.TemporaryDirectory() as folder:
        trainers = {
            name: make_trainer(teacher, copy.deepcopy(student), rows, collator, f"{folder}/{i}", settings)
            for i, (name, settings) in enumerate(ROWS.items())
        }
        for trainer in trainers.values():  # warm-up: first calls allocate, build taps and layer pairs
            time_steps(trainer, batches[:1])
        for round_index in range(options.repeats):
            names = list(ROWS)
            names = names[round_index % len(names) :] + names[: round_index % len(names)]
            for name in names:
                seconds[name].append(time_steps(trainers[name], batches))
    samples = 32 * len(batches)
    print(f"\n{samples} real SST-2 training sentences in batches of 32 (max 64 tokens), all-MiniLM-L6-v2 teacher")
    machine = platform.processor() or platform.machine()
    print(f"online, 3-layer student; {machine}, {torch.get_num_threads()} threads, torch {torch.__version__};")
    print(f"compute_loss + backward, median of {options.repeats} interleaved rounds", end="")
    print(" (smoke: times mean nothing).\n" if options.smoke else ".\n")
    baseline = statistics.median(seconds[next(iter(ROWS))])
    print("| step | seconds | samples/s | time vs logits only |\n|---|---:|---:|---:|")
    for name, values in seconds.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f} | {samples / median:,.0f} | {median / baseline:.2f}x |")


if __name__ == "__main__":
    main()
