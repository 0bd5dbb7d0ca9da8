"""Memory and speed of the masked-LM token KL: the copied recipes' step (full logits, the KL over every position)
and hf-distill's full-logit path (its KL over the counted positions only) against its heads on the counted positions
only, side by side in one process; ratios are against the recipe's step.

    python scripts/benchmark_mlm.py                  # BERT-base-shaped teacher -> 6-layer student, 32 x 128, CPU
    python scripts/benchmark_mlm.py --device cuda    # the same on a GPU
    python scripts/benchmark_mlm.py --smoke          # tiny sizes: checks the script, measures nothing
    python scripts/benchmark_mlm.py --cached         # the teacher's top-64 cached: the student's full logits against
                                                     # its head on the counted positions (KD + MLM loss, no cosine)

One training step each (forward of both models, DistilBERT's 5 / 2 / 1 loss, backward), random weights, 15% of the
positions masked, interleaved over `--repeats` rounds (in the order listed, then reversed, in turn). Peak memory is
above what was allocated before the step, i.e. above the models' weights (the student's gradients are cleared before
each measured step): CUDA tensors on a GPU, the sampled resident set size on a CPU (see benchmarks/memory.py's
PeakMemory; a CPU peak under 1 MiB is noise, its ratio printed n/a). Prints one table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import BertConfig, BertForMaskedLM

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.arguments import positive_int  # noqa: E402
from benchmarks.memory import PeakMemory  # noqa: E402
from hf_distill import DistillationTrainer, DistillationTrainingArguments, build_student  # noqa: E402

MIN_PEAK_BYTES = 2**20  # below this a CPU peak is the sampler's noise: its ratio is not printed
RECIPE = "recipe: full logits, KL over every position"
CACHED_FULL = "cached top-64: the student's full logits"
CACHED_GATHERED = "cached top-64: ours, head on counted positions"
CACHE_TOP_K = 64


def setup(smoke: bool, device: str):
    sizes = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
    batch, length, vocab = 32, 128, 30522
    if smoke:
        sizes = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
        batch, length, vocab = 4, 16, 500
    torch.manual_seed(0)
    teacher = BertForMaskedLM(BertConfig(vocab_size=vocab, **sizes)).eval()
    student = build_student(teacher, num_layers=max(1, sizes["num_hidden_layers"] // 2))
    input_ids = torch.randint(5, vocab, (batch, length))
    labels = torch.where(torch.rand(batch, length) < 0.15, input_ids, -100)
    inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels}
    return teacher.to(device), student.to(device), {k: v.to(device) for k, v in inputs.items()}


def with_cached_top_k(teacher, inputs, temperature: float):
    """`inputs` plus the teacher's top-k log-probabilities at T and their indices, `(B, L, k)`, filled at the counted
    positions as the teacher cache's collator gives them (`hf_distill.cache.collator`)."""
    from hf_distill.cache.store import TOPK_INDICES_COLUMN, TOPK_LOG_PROBS_COLUMN

    with torch.inference_mode():
        logits = teacher(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
        top = torch.log_softmax(logits.float() / temperature, dim=-1).topk(CACHE_TOP_K, dim=-1)
    counted = inputs["labels"].ne(-100).unsqueeze(-1)
    log_probs = torch.where(counted, top.values, torch.zeros_like(top.values))
    indices = torch.where(counted, top.indices, torch.zeros_like(top.indices))
    return {**inputs, TOPK_LOG_PROBS_COLUMN: log_probs, TOPK_INDICES_COLUMN: indices}


def step(trainer, student, inputs) -> None:
    trainer.compute_loss(student, inputs).backward()


class KLOverEveryPosition:
    """The copied recipes' masked-LM distillation step, for reference: full logits of both models, the KL's
    softmaxes over every position (DistilBERT's distiller selects the attended positions, here all of them), masked
    after; the same 5 / 2 / 1 loss and T = 2 as the trainers."""

    def __init__(self, teacher):
        self.teacher = teacher

    def compute_loss(self, student, inputs):
        import torch.nn.functional as F

        labels, mask = inputs["labels"], inputs["attention_mask"]
        forward = {"input_ids": inputs["input_ids"], "attention_mask": mask, "output_hidden_states": True}
        outputs = student(**forward)
        with torch.no_grad():
            target = self.teacher(**forward)
        temperature = 2.0
        kl = F.kl_div(F.log_softmax(outputs.logits / temperature, dim=-1),
                      F.softmax(target.logits / temperature, dim=-1), reduction="none").sum(dim=-1)  # fmt: skip
        counted = labels.ne(-100)
        kd = (kl * counted).sum() / counted.sum().clamp(min=1) * temperature**2
        task = F.cross_entropy(outputs.logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        attended = mask.bool()
        student_hidden, teacher_hidden = outputs.hidden_states[-1][attended], target.hidden_states[-1][attended]
        cosine = F.cosine_embedding_loss(student_hidden, teacher_hidden, student_hidden.new_ones(len(student_hidden)))
        return 5.0 * kd + 2.0 * task + 1.0 * cosine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # "cuda", not "cuda:1": Trainer places the student on the current CUDA device, the inputs would go elsewhere
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--cached", action="store_true", help="the teacher's outputs cached (see the docstring)")
    options = parser.parse_args()
    if options.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda needs a CUDA GPU (torch.cuda.is_available() is False): pass --device cpu")
    teacher, student, inputs = setup(options.smoke, options.device)
    student.train()
    trainers = {}
    with tempfile.TemporaryDirectory() as folder:
        configurations = (
            ("full logits", False, None),
            ("ours: heads on counted positions", True, None),
            ("ours: + chunks of 128 positions", True, 128),
        )
        if options.cached:  # the cosine term needs the teacher online: KD and the MLM loss alone
            configurations = ((CACHED_FULL, False, None), (CACHED_GATHERED, True, None))
            inputs = with_cached_top_k(teacher, inputs, temperature=2.0)
        for name, gather, chunk in configurations:
            args = DistillationTrainingArguments(
                output_dir=folder, temperature=2.0, alpha_kd=5.0, alpha_task=2.0,
                alpha_cos=0.0 if options.cached else 1.0, cache_teacher_logits=options.cached, report_to="none",
                use_cpu=options.device == "cpu", token_kd_gather_positions=gather, token_kd_chunk_size=chunk,
            )  # fmt: skip
            trainers[name] = DistillationTrainer(model=student, teacher_model=teacher, args=args)
        if not options.cached:
            trainers[RECIPE] = KLOverEveryPosition(teacher)  # the teacher as the trainers placed it (frozen, eval)
        cuda = options.device.startswith("cuda")
        for trainer in trainers.values():  # warm-up: first-call allocations and kernels
            student.zero_grad(set_to_none=True)
            step(trainer, student, inputs)
        seconds = {name: [] for name in trainers}
        peaks = {name: [] for name in trainers}
        for round_index in range(options.repeats):
            order = list(trainers) if round_index % 2 == 0 else list(reversed(trainers))
            for name in order:
                # Before the measured block: a start holding the last step's gradients (freed during the step) would
                # put every peak one student's gradients too low.
                student.zero_grad(set_to_none=True)
                with PeakMemory(cuda) as memory:
                    start = time.perf_counter()
                    step(trainers[name], student, inputs)
                    if cuda:
                        torch.cuda.synchronize()
                    seconds[name].append(time.perf_counter() - start)
                peaks[name].append(memory.delta)
    batch, length = inputs["input_ids"].shape
    vocab = teacher.config.vocab_size
    counted = int(inputs["labels"].ne(-100).sum())
    print(f"\nOne training step, {batch} x {length} tokens ({counted} masked), V = {vocab:,}, teacher "
          f"{teacher.config.num_hidden_layers} layers -> student {student.config.num_hidden_layers}, "
          f"{options.device}; median of {options.repeats} interleaved rounds"
          f"{f'; the teacher top-{CACHE_TOP_K} cached (it runs in no step)' if options.cached else ''}"
          f"{' (smoke: measures nothing)' if options.smoke else ''}.\n")  # fmt: skip
    base, versus = (CACHED_FULL, "vs full logits") if options.cached else (RECIPE, "vs recipe")
    print(f"| configuration | peak memory above weights (MiB) | {versus} | seconds/step | samples/s | {versus} |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in trainers:
        peak, time_ = statistics.median(peaks[name]), statistics.median(seconds[name])
        # a resident-set peak under 1 MiB is the CPU sampler's noise (it can read 0 or below): no ratio with it
        baseline_peak = statistics.median(peaks[base])
        measured = min(peak, baseline_peak) >= MIN_PEAK_BYTES
        less = f"{baseline_peak / peak:.2f}x less" if measured else "n/a (< 1 MiB)"
        faster = statistics.median(seconds[base]) / time_
        print(f"| {name} | {peak / 2**20:,.0f} | {less} | {time_:.2f} | {batch / time_:.1f} | "
              f"{faster:.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
