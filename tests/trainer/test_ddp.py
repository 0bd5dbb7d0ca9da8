"""A real 2-process DDP distillation on CPU (torchrun, gloo)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import torch
from processes import DDP_SCRIPT, HELPERS, run_checked

from hf_distill.trainer.intermediate import PROJECTION_NAME


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun is not on PATH")
def test_two_rank_ddp_matches_one_process_with_the_whole_batch(tmp_path):
    run_checked(["torchrun", "--nproc_per_node", "2", str(DDP_SCRIPT), str(tmp_path / "ddp"), "4", "1"], cwd=tmp_path)
    run_checked([sys.executable, str(DDP_SCRIPT), str(tmp_path / "single"), "8", "1"], cwd=tmp_path)
    rank0, rank1 = (torch.load(tmp_path / "ddp" / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    single = torch.load(tmp_path / "single" / "rank0.pt", weights_only=True)
    assert rank0["world_size"] == rank1["world_size"] == 2 and single["world_size"] == 1
    # Only the student is wrapped for DDP; the frozen teacher is neither wrapped nor changed on any rank.
    for rank in (rank0, rank1):
        assert rank["student_wrapper_type"] == "DistributedDataParallel"
        assert rank["teacher_type"] == "BertForTokenClassification" and rank["teacher_unchanged"]

    # Both ranks hold the identical student.
    for name, tensor in rank0["state"].items():
        assert torch.equal(tensor, rank1["state"][name]), f"ranks disagree on {name}"
    # 2 ranks x 4 (token level, uneven padding and label counts) take the updates of one process with batch 8:
    # the loss is normalised by the items of the whole batch across ranks, and scaled back by the world size.
    for name, tensor in single["state"].items():
        torch.testing.assert_close(rank0["state"][name], tensor, rtol=1e-4, atol=1e-4, msg=f"{name} differs")
    ddp_losses = [entry["loss"] for entry in rank0["log"] if "loss" in entry]
    single_losses = [entry["loss"] for entry in single["log"] if "loss" in entry]
    assert len(ddp_losses) == 4 and ddp_losses == pytest.approx(single_losses, rel=1e-5)
    assert all("loss_kd" in entry and "loss_task" in entry for entry in rank0["log"] if "loss" in entry)


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun is not on PATH")
@pytest.mark.parametrize(
    "mode",
    [
        # every third row unlabelled (-100): the ranks' micro-batches hold different numbers of labelled rows, and the
        # task term must still average over the labelled rows of the whole batch across ranks
        "mixed",
        # masked LM: both vocabulary heads run on the counted positions only, unevenly many per rank
        "mlm",
        # the same, the heads run by the loss in chunks of 3 positions (outside the DDP wrapper's forward)
        "mlm_chunked",
        # the teacher's top-k cached first: the student's head alone runs, on its rank's counted positions
        "mlm_cached",
        # hidden states (through a learned projection: the student is half as wide), attention and value relations
        "intermediate",
        # no teacher: LabelsTrainer, the baselines' and the teacher fine-tune's trainer (a plain Trainer reports and
        # trains on twice the loss under 2 processes in transformers 5: labels_trainer.py)
        "labels",
    ],
)
def test_two_rank_ddp_matches_one_process_for_unlabelled_rows_and_lm_heads(tmp_path, mode):
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    run_checked(["torchrun", "--nproc_per_node", "2", str(DDP_SCRIPT), str(ddp), "4", "1", mode], cwd=tmp_path)
    run_checked([sys.executable, str(DDP_SCRIPT), str(single), "8", "1", mode], cwd=tmp_path)
    rank0, rank1 = (torch.load(ddp / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    one = torch.load(single / "rank0.pt", weights_only=True)
    for name, tensor in one["state"].items():
        assert torch.equal(rank0["state"][name], rank1["state"][name]), f"ranks disagree on {name}"
        torch.testing.assert_close(rank0["state"][name], tensor, rtol=1e-4, atol=1e-4, msg=f"{name} differs")
    if mode == "mlm_cached":  # only the main process ran the teacher, for the cache; the step's loss is gathered
        assert rank0["teacher_calls"] > 0 and rank1["teacher_calls"] == 0 and rank0["cache_built"]
        assert [e["loss"] for e in rank0["log"] if "loss" in e] == pytest.approx(
            [e["loss"] for e in one["log"] if "loss" in e], rel=1e-5
        )
    if mode == "labels":  # the same logged training losses and evaluation loss as one process
        assert rank0["wrapper_type"] == "DistributedDataParallel" and one["wrapper_type"] != "DistributedDataParallel"
        ddp_losses = [entry["loss"] for entry in rank0["log"] if "loss" in entry]
        assert len(ddp_losses) == 4
        assert ddp_losses == pytest.approx([e["loss"] for e in one["log"] if "loss" in e], rel=1e-4)
        assert rank0["eval_loss"] == pytest.approx(one["eval_loss"], rel=1e-5)
    if mode == "intermediate":  # the projection is part of the DDP-wrapped student: averaged, identical, trained
        projection = [name for name in one["state"] if name.startswith(PROJECTION_NAME)]
        assert projection and tuple(one["state"][f"{PROJECTION_NAME}.weight"].shape) == (32, 16)
        assert not torch.equal(one["state"][f"{PROJECTION_NAME}.weight"], one["initial_projection"])
        logged = next(entry for entry in rank0["log"] if "loss" in entry)
        assert all(logged[f"loss_{term}"] > 0 for term in ("hidden", "attention", "value_relation"))


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun is not on PATH")
def test_ranks_may_exit_unevenly_after_end_distributed(tmp_path):
    # CI once failed when rank 1 left while rank 0 still measured latency: rank 1 aborted (SIGABRT) at exit with the
    # gloo group alive. Without end_distributed() this script aborts in about one run of five here; with it, never.
    script = HELPERS / "uneven_exit.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for _ in range(3):
        command = ["torchrun", "--nproc_per_node", "2", str(script), "teardown"]
        result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-3000:]
