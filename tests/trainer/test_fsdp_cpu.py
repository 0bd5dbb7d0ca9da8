"""The FSDP teacher path on CPU (2 ranks, gloo): each rank holds only its shard of the teacher, the sharded teacher
gives the unsharded logits, and distillation with it ends with the student a replicated teacher gives."""

from __future__ import annotations

import importlib.util
import shutil

import pytest
import torch
from processes import HELPERS, run_checked

SCRIPT = HELPERS / "fsdp_teacher.py"


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun is not on PATH")
def test_fsdp2_sharded_teacher_matches_the_replicated_one(tmp_path):
    for mode in ("sharded", "replicated"):
        run_checked(["torchrun", "--nproc_per_node", "2", str(SCRIPT), str(tmp_path / mode), mode], cwd=tmp_path)
    sharded = [torch.load(tmp_path / "sharded" / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    replicated = torch.load(tmp_path / "replicated" / "rank0.pt", weights_only=True)
    for rank in sharded:
        assert rank["world_size"] == 2 and rank["is_dtensor"]
        # Each rank holds half of every sharded parameter (dim 0 split over 2 ranks) and nothing more.
        local = sum(torch.Size(shape).numel() for shape in rank["local_shapes"].values())
        full = sum(torch.Size(shape).numel() for shape in rank["full_shapes"].values())
        assert local <= full / 2 + 64  # odd first dimensions round up by at most one row per parameter
        word = rank["local_shapes"]["bert.embeddings.word_embeddings.weight"]
        assert word[0] == rank["full_shapes"]["bert.embeddings.word_embeddings.weight"][0] // 2
        torch.testing.assert_close(rank["sharded_logits"], rank["full_logits"], rtol=1e-6, atol=1e-6)
    assert not replicated["is_dtensor"]
    # The replicated run asked Trainer for FSDP on CPU, as a user would: Accelerate ran DDP, and the trainer said so.
    assert replicated["fsdp_warning"]
    for name, tensor in replicated["state"].items():
        assert torch.equal(sharded[0]["state"][name], sharded[1]["state"][name]), f"ranks disagree on {name}"
        torch.testing.assert_close(sharded[0]["state"][name], tensor, rtol=1e-5, atol=1e-6, msg=f"{name} differs")


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun is not on PATH")
@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed is not installed")
def test_zero3_partitioned_teacher_matches_the_replicated_one(tmp_path):
    # DeepSpeed's CPU accelerator with gloo: ZeRO-3 partitions the teacher across the two CPU ranks.
    env = {"DS_ACCELERATOR": "cpu"}
    for mode in ("zero3", "replicated"):
        run_checked(["torchrun", "--nproc_per_node", "2", str(SCRIPT), str(tmp_path / mode), mode], cwd=tmp_path,
                    env=env)  # fmt: skip
    partitioned = [torch.load(tmp_path / "zero3" / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    replicated = torch.load(tmp_path / "replicated" / "rank0.pt", weights_only=True)
    for rank in partitioned:
        assert rank["is_partitioned"] and rank["teacher_type"] == "DeepSpeedEngine"
        local = sum(torch.Size(shape).numel() for shape in rank["local_shapes"].values())
        full = sum(torch.Size(shape).numel() for shape in rank["full_shapes"].values())
        assert local <= full / 2 + 64
        torch.testing.assert_close(rank["sharded_logits"], rank["full_logits"], rtol=1e-6, atol=1e-6)
    for name, tensor in replicated["state"].items():
        assert torch.equal(partitioned[0]["state"][name], partitioned[1]["state"][name]), f"ranks disagree on {name}"
        torch.testing.assert_close(partitioned[0]["state"][name], tensor, rtol=1e-5, atol=1e-6, msg=f"{name} differs")
