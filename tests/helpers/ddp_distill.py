"""Run under `torchrun --nproc_per_node 2`: a token-level distillation on CPU (gloo); each rank saves its student.

    ddp_distill.py OUTPUT_DIR PER_DEVICE_BATCH ACCUMULATION MODE

MODE (optional): cache, mixed, mlm, mlm_chunked, mlm_cached, intermediate or labels.

With `cache`, the teacher's outputs are cached first; each rank also saves how often its teacher ran. With `mixed`,
a class-level distillation whose every third row is unlabelled (-100): ranks hold different numbers of labelled rows.
With `mlm`, a masked-LM distillation whose vocabulary heads run on the counted positions only; `mlm_chunked`, 3
positions at a time, outside the DDP wrapper's forward; `mlm_cached`, the teacher's top-k cached first (the
student's head alone runs, on the counted positions). With `intermediate`, the `mixed` rows with every
intermediate-layer term on and a student half the teacher's width: the learned hidden-state projection trains with
it (its state is saved with the student's). With `labels`, the `mixed` rows train the student on its labels alone
(`LabelsTrainer`, no teacher), which is then evaluated on 16 labelled rows (`eval_loss` saved).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tiny.py beside this script

import tiny  # noqa: E402
from trainers import EXACT_UPDATES, make_args  # noqa: E402

from hf_distill import DistillationTrainer, LabelsTrainer  # noqa: E402
from hf_distill.cli.distributed import end_distributed  # noqa: E402
from hf_distill.trainer.intermediate import PROJECTION_NAME  # noqa: E402


def make_teacher(mixed: bool, mlm: bool = False):
    if mlm:
        return tiny.masked_lm(layers=2, seed=0, initializer_range=0.5)
    if mixed:
        return tiny.classifier(layers=2, seed=0, initializer_range=0.5)
    return tiny.token_classifier(layers=2, seed=0, initializer_range=0.5)


def make_rows(mixed: bool, mlm: bool = False):
    if mlm:  # ~25% of the positions counted, unevenly per row: the heads run on those only
        return tiny.mlm_rows(32, seed=2, mask_seed=4)
    if not mixed:
        return tiny.token_rows(32, seed=2, ignored_fraction=0.4)
    rows = tiny.class_rows(32, seed=2).rows
    for index, row in enumerate(rows):
        if index % 3 == 1:
            row["labels"] = -100
    return tiny.ListDataset(rows)


def main(
    output_dir: str, per_device_batch: int, accumulation: int, cache: bool = False, mixed: bool = False,
    mlm: bool = False, chunk: int | None = None, intermediate: bool = False, labels: bool = False,
) -> None:  # fmt: skip
    mixed = mixed or intermediate or labels
    teacher = make_teacher(mixed, mlm)
    teacher_calls = []
    teacher.register_forward_hook(lambda *_: teacher_calls.append(1))
    factory = tiny.masked_lm if mlm else tiny.classifier if mixed else tiny.token_classifier
    student = factory(layers=1, seed=1, initializer_range=0.5, **({"hidden_size": 16} if intermediate else {}))
    terms = (
        dict(alpha_hidden=0.5, alpha_attention=0.3, alpha_value_relation=0.3, alpha_cos=0.0) if intermediate else {}
    )
    args = make_args(
        Path(output_dir),
        per_device_train_batch_size=per_device_batch,
        gradient_accumulation_steps=accumulation,
        **EXACT_UPDATES,
        cache_teacher_logits=cache,
        token_kd_chunk_size=chunk,
        teacher_cache_batch_size=8,
        **terms,
    )
    if labels:
        trainer = LabelsTrainer(model=student, args=args, train_dataset=make_rows(True), data_collator=tiny.collate)
        trainer.train()
        # 16 labelled rows, one batch per rank (per_device_eval_batch_size 8 under 2 ranks, 16 alone): the mean of
        # the ranks' batch means is the mean over the 16 rows.
        trainer.args.per_device_eval_batch_size = 16 // trainer.args.world_size
        metrics = trainer.evaluate(eval_dataset=tiny.class_rows(16, seed=6))
        torch.save(
            {
                "state": trainer.model.state_dict(),
                "world_size": trainer.args.world_size,
                "log": trainer.state.log_history,
                "eval_loss": metrics["eval_loss"],
                "wrapper_type": type(trainer.model_wrapped).__name__,
            },
            Path(output_dir) / f"rank{trainer.args.process_index}.pt",
        )
        return
    trainer = DistillationTrainer(
        model=student,
        teacher_model=teacher,
        args=args,
        train_dataset=make_rows(mixed, mlm),
        data_collator=tiny.collate,
    )
    projection = getattr(trainer.model, PROJECTION_NAME, None)
    initial_projection = None if projection is None else projection.weight.detach().clone()
    trainer.train()
    rank = trainer.args.process_index
    torch.save(
        {
            "state": trainer.model.state_dict(),
            "world_size": trainer.args.world_size,
            "initial_projection": initial_projection,
            "log": trainer.state.log_history,
            "teacher_calls": len(teacher_calls),
            "cache_built": bool(trainer.teacher_cache and trainer.teacher_cache.built),
            "teacher_type": type(trainer.teacher_model).__name__,
            "student_wrapper_type": type(trainer.model_wrapped).__name__,
            "teacher_unchanged": all(
                torch.equal(tensor, fresh)
                for tensor, fresh in zip(
                    trainer.teacher_model.state_dict().values(),
                    make_teacher(mixed, mlm).state_dict().values(),
                    strict=True,
                )
            ),
        },
        Path(output_dir) / f"rank{rank}.pt",
    )


if __name__ == "__main__":
    mode = sys.argv[4:]
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), cache=mode in (["cache"], ["mlm_cached"]),
         mixed=mode == ["mixed"], mlm=mode in (["mlm"], ["mlm_chunked"], ["mlm_cached"]),
         chunk=3 if mode == ["mlm_chunked"] else None,
         intermediate=mode == ["intermediate"], labels=mode == ["labels"])  # fmt: skip
    end_distributed()
