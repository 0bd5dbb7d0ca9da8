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
    sharded, replicated = run_beside_replicated(tmp_path, "sharded")
    for rank in sharded:
        assert rank["world_size"] == 2 and rank["is_dtensor"]
        # never moved whole before sharding: a teacher bigger than one GPU would not fit there
        assert rank["teacher_moves"] == []
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
    check_students_agree(sharded, replicated)
    check_scored_and_gathered(sharded, replicated)


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun is not on PATH")
def test_fsdp2_sharded_masked_lm_teacher_keeps_its_tied_head_and_serves_chunked_heads(tmp_path):
    # A masked-LM teacher's decoder is tied to its word embeddings: sharding the embeddings as their own FSDP unit
    # split the tied weight over two units (FSDP2 refuses it at the first forward), and a root resharded after the
    # forward left the head's weight a sharded DTensor when the chunked loss called the head itself.
    script = HELPERS / "fsdp_mlm_teacher.py"
    run_checked(["torchrun", "--nproc_per_node", "2", str(script), str(tmp_path)], cwd=tmp_path)
    for rank in (0, 1):
        saved = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert saved["layer_is_dtensor"] and saved["tied"]
        # two forwards each: the second after the first resharded the layers (and, by default, the root)
        for logits in [*saved["logits"], *saved["default_logits"]]:
            torch.testing.assert_close(logits, saved["full_logits"], rtol=1e-5, atol=1e-5)
        assert saved["default_root_is_dtensor"] and not saved["kept_root_is_dtensor"]
        if rank == 0:  # the whole copy: every weight, in the dtype the sharded teacher stored (the card states it)
            assert saved["whole_dtypes"] == ["torch.bfloat16"]
            for name, tensor in saved["half_reference"].items():
                assert torch.equal(saved["whole_state"][name], tensor), f"{name} differs"
        else:
            assert saved["whole_state"] is None
        assert saved["full_kd"] > 0
        torch.testing.assert_close(saved["kd"], saved["full_kd"], rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun is not on PATH")
@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed is not installed")
def test_zero3_partitioned_teacher_matches_the_replicated_one(tmp_path):
    # DeepSpeed's CPU accelerator with gloo: ZeRO-3 partitions the teacher across the two CPU ranks.
    partitioned, replicated = run_beside_replicated(tmp_path, "zero3")
    for rank in partitioned:
        assert rank["is_partitioned"] and rank["teacher_type"] == "DeepSpeedEngine"
        local = sum(torch.Size(shape).numel() for shape in rank["local_shapes"].values())
        full = sum(torch.Size(shape).numel() for shape in rank["full_shapes"].values())
        assert local <= full / 2 + 64
        torch.testing.assert_close(rank["sharded_logits"], rank["full_logits"], rtol=1e-6, atol=1e-6)
    check_students_agree(partitioned, replicated)
    check_scored_and_gathered(partitioned, replicated)


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun is not on PATH")
@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed is not installed")
def test_zero2_teacher_runs_whole_in_a_stage_0_engine_and_matches_the_replicated_one(tmp_path):
    # ZeRO-1/2 shard optimizer state and gradients, which a frozen teacher has none of: its engine runs at stage 0,
    # every rank holding the whole teacher, and the student's own ZeRO-2 config is left as it was.
    ranks, replicated = run_beside_replicated(tmp_path, "zero2")
    for rank in ranks:
        assert rank["teacher_type"] == "DeepSpeedEngine" and rank["zero_stage"] == 0
        assert not rank["is_partitioned"]
        assert rank["local_shapes"] == rank["full_shapes"]  # whole on every rank
        assert rank["plugin_configs"] == [
            {"zero_optimization": {"stage": 2}, "optimizer": {"type": "AdamW"}, "gradient_clipping": 1.0}
        ]
        torch.testing.assert_close(rank["sharded_logits"], rank["full_logits"], rtol=1e-6, atol=1e-6)
    check_students_agree(ranks, replicated)
    check_scored_and_gathered(ranks, replicated)


def run_beside_replicated(tmp_path, mode: str) -> tuple[list[dict], dict]:
    """`mode`'s two ranks' records and the replicated run's rank 0, each run under torchrun (gloo; a ZeRO mode on
    DeepSpeed's CPU accelerator)."""
    env = {"DS_ACCELERATOR": "cpu"} if mode.startswith("zero") else None
    for run in (mode, "replicated"):
        run_checked(["torchrun", "--nproc_per_node", "2", str(SCRIPT), str(tmp_path / run), run], cwd=tmp_path,
                    env=env)  # fmt: skip
    ranks = [torch.load(tmp_path / mode / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    return ranks, torch.load(tmp_path / "replicated" / "rank0.pt", weights_only=True)


def check_students_agree(ranks: list[dict], replicated: dict) -> None:
    """Both ranks trained the same student, the one the replicated teacher's run trained."""
    for name, tensor in replicated["state"].items():
        assert torch.equal(ranks[0]["state"][name], ranks[1]["state"][name]), f"ranks disagree on {name}"
        torch.testing.assert_close(ranks[0]["state"][name], tensor, rtol=1e-5, atol=1e-6, msg=f"{name} differs")


def check_scored_and_gathered(ranks: list[dict], replicated: dict) -> None:
    """The sharded teacher, scored where it is (no second `accelerator.prepare`, which accelerate < 1.16 refuses under
    FSDP2), scores as the unsharded teacher does by hand and through a plain Trainer; gathered whole, it is the teacher
    it was."""
    expected = replicated["expected"]
    trainer_path = replicated["scores"]  # the replicated teacher goes through a plain Trainer, as before
    assert trainer_path["teacher_eval_rows"] == 13 and trainer_path["teacher_eval_rows_mm"] == 16
    assert trainer_path["teacher_eval_accuracy"] == pytest.approx(expected["accuracy"], abs=1e-12)
    # 16 rows split evenly (8 per rank): the mean of the batch losses is the mean over rows. (Through a plain
    # Trainer, transformers 5 reported it multiplied by the 2 processes; the teacher's evaluator is a LabelsTrainer.)
    assert trainer_path["teacher_eval_loss_mm"] == pytest.approx(expected["loss_mm"], rel=1e-5)
    assert replicated["whole_type"] == "BertForSequenceClassification"  # not sharded: the teacher itself
    for rank in ranks:
        scores = rank["scores"]
        assert sorted(scores) == sorted(trainer_path)
        assert scores["teacher_eval_rows"] == 13  # the rows one rank's last batch repeats are dropped
        assert scores["teacher_eval_rows_mm"] == 16
        for suffix in ("", "_mm"):
            assert scores[f"teacher_eval_accuracy{suffix}"] == pytest.approx(expected[f"accuracy{suffix}"], abs=1e-12)
            # 13 rows: one rank's last batch repeats 3, in its batch mean as in the Trainer's
            loss = trainer_path[f"teacher_eval_loss{suffix}"]
            assert scores[f"teacher_eval_loss{suffix}"] == pytest.approx(loss, rel=1e-5)
    assert ranks[1]["whole"] is None and ranks[1]["whole_type"] == "NoneType"
    whole = ranks[0]["whole"]
    assert ranks[0]["whole_type"] == "BertForSequenceClassification"
    reference = replicated["whole"]
    assert sorted(whole) == sorted(reference)
    for name, tensor in reference.items():
        assert torch.equal(whole[name], tensor), f"{name}: the gathered teacher differs from the one sharded"
