"""Run under `torchrun --nproc_per_node 2` (CPU, gloo): the teacher sharded by hf-distill's FSDP2 or ZeRO-3 path.

    fsdp_teacher.py OUTPUT_DIR [sharded|replicated|zero3|zero2]

zero3: the teacher partitioned by DeepSpeed ZeRO-3 through `prepare_teacher` (needs deepspeed and DS_ACCELERATOR=cpu:
DeepSpeed's CPU accelerator, gloo). zero2: the same under a ZeRO-2 config, which shards optimizer state and
gradients only (a frozen teacher has neither): the teacher runs in a DeepSpeed engine, whole on every rank. Under
Trainer on CPU, Accelerate counts one process per rank for DeepSpeed (each rank would iterate the whole dataset),
so here too the plugin object drives the project's path directly.

Accelerate runs no FSDP on CPU: with `use_cpu=True` it resolves MULTI_CPU and drops the FSDP plugin (DDP instead),
and without it Trainer refuses `fsdp` outside distributed GPU training. So the project's path is driven with the
plugin object directly: `prepare_teacher` sees an accelerator whose state carries an FSDP2 plugin and shards the
teacher with `fully_shard`. The student trains under DDP, as Trainer sets it up on CPU. Each rank saves its
teacher's local shard sizes, the sharded and unsharded logits on one batch, and its trained student; then the
teacher scored beside the student (`evaluate_side_by_side`; of 13 rows, one rank's last batch repeats 3) and
gathered whole (`gather_whole`, rank 0 only).
"""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tiny  # noqa: E402
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin  # noqa: E402
from trainers import EXACT_UPDATES, make_args  # noqa: E402

import hf_distill.trainer.trainer as trainer_module  # noqa: E402
from hf_distill import DistillationTrainer  # noqa: E402
from hf_distill.cli.distributed import end_distributed  # noqa: E402
from hf_distill.publish.evaluation import evaluate_side_by_side  # noqa: E402
from hf_distill.trainer.teacher import gather_whole, prepare_teacher  # noqa: E402


def shard_with_fsdp2(teacher, accelerator, *, micro_batch_size: int = 1, keep_root_gathered: bool = False):
    """`prepare_teacher` as it runs under Accelerate's FSDP2 plugin, on this CPU."""
    plugin = FullyShardedDataParallelPlugin(fsdp_version=2)
    state = SimpleNamespace(fsdp_plugin=plugin)
    fsdp_accelerator = SimpleNamespace(
        distributed_type=DistributedType.FSDP, state=state, device=accelerator.device, mixed_precision="no"
    )
    return prepare_teacher(
        teacher, fsdp_accelerator, micro_batch_size=micro_batch_size, keep_root_gathered=keep_root_gathered
    )


PLUGIN_CONFIGS: list[dict] = []


def prepare_under_zero(teacher, accelerator, *, micro_batch_size: int = 1, keep_root_gathered: bool = False,
                       stage: int = 3):  # fmt: skip
    """`prepare_teacher` as it runs under Accelerate's DeepSpeed plugin with a ZeRO-`stage` config, on this CPU (ZeRO-3
    gathers a module's weights whenever it is called: `keep_root_gathered` is FSDP2's alone)."""
    config = {"zero_optimization": {"stage": stage}, "optimizer": {"type": "AdamW"}, "gradient_clipping": 1.0}
    PLUGIN_CONFIGS.append(config)  # the student's config, which the teacher's must leave as it was
    state = SimpleNamespace(deepspeed_plugin=SimpleNamespace(deepspeed_config=config))
    ds_accelerator = SimpleNamespace(
        distributed_type=DistributedType.DEEPSPEED, state=state, device=accelerator.device, mixed_precision="no"
    )
    return prepare_teacher(teacher, ds_accelerator, micro_batch_size=micro_batch_size)


def local_shape(parameter) -> tuple[int, ...]:
    if hasattr(parameter, "to_local"):  # FSDP2: a DTensor
        return tuple(parameter.to_local().shape)
    if hasattr(parameter, "ds_tensor"):  # ZeRO-3: this rank's partition, flattened
        return (parameter.ds_tensor.numel(),)
    return tuple(parameter.shape)


TIMINGS = ("runtime", "_per_second", "_preparation_time")


def accuracy(prediction) -> dict[str, float]:
    correct = prediction.predictions.argmax(-1) == prediction.label_ids
    return {"accuracy": float(correct.mean()), "rows": len(prediction.label_ids)}


def main(output_dir: str, mode: str) -> None:
    data = tiny.class_rows(32, seed=2)
    teacher = tiny.classifier(layers=2, seed=0, initializer_range=0.5)
    reference = tiny.classifier(layers=2, seed=0, initializer_range=0.5).eval()
    moves = []  # whole-model moves of the teacher: fully_shard moves each layer itself, a shard at a time
    if mode == "sharded":
        trainer_module.prepare_teacher = shard_with_fsdp2
        real_to = teacher.to
        teacher.to = lambda *a, **k: (moves.append(repr((a, k))), real_to(*a, **k))[1]
    elif mode == "zero3":
        trainer_module.prepare_teacher = prepare_under_zero
    elif mode == "zero2":
        trainer_module.prepare_teacher = functools.partial(prepare_under_zero, stage=2)
    student = tiny.classifier(layers=1, seed=1, initializer_range=0.5)
    # replicated: FSDP asked of Trainer on CPU, as a user would; Accelerate runs DDP and the trainer must say so
    fsdp = {"fsdp": "full_shard", "fsdp_config": {"fsdp_version": 2}} if mode == "replicated" else {}
    warnings = []
    handler = logging.Handler()
    handler.emit = lambda record: warnings.append(record.getMessage())
    logging.getLogger("hf_distill.trainer.trainer").addHandler(handler)
    args = make_args(Path(output_dir), per_device_train_batch_size=4, **EXACT_UPDATES, **fsdp)
    trainer = DistillationTrainer(model=student, teacher_model=teacher, args=args, train_dataset=data,
                                  data_collator=tiny.collate)  # fmt: skip
    moves_before_sharded = list(moves)  # (evaluation later moves the sharded teacher: its shards, a no-op here)
    batch = tiny.collate([data[i] for i in range(8)])
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        sharded_logits = trainer.teacher_model(**inputs).logits
        full_logits = reference(**inputs).logits
    module = getattr(trainer.teacher_model, "module", trainer.teacher_model)  # under a DeepSpeed engine
    local = {name: local_shape(parameter) for name, parameter in module.named_parameters()}
    trainer.train()
    splits = {"validation": tiny.class_rows(13, seed=3), "validation_mismatched": tiny.class_rows(16, seed=4)}
    scores = evaluate_side_by_side(trainer, trainer.teacher_model, splits, tiny.collate, accuracy)
    with torch.no_grad():  # the unsharded teacher, by hand: float64 cross-entropy over every row of each split
        expected = {}
        for split, rows in splits.items():
            batch = tiny.collate([rows[i] for i in range(len(rows))])
            logits = reference(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.double()
            suffix = "_mm" if split == "validation_mismatched" else ""
            expected[f"loss{suffix}"] = torch.nn.functional.cross_entropy(logits, batch["labels"]).item()
            expected[f"accuracy{suffix}"] = (logits.argmax(-1) == batch["labels"]).double().mean().item()
    whole = gather_whole(trainer.teacher_model)
    torch.save(
        {
            "local_shapes": local,
            "full_shapes": {name: tuple(p.shape) for name, p in reference.named_parameters()},
            "is_dtensor": all(hasattr(p, "to_local") for p in module.parameters()),
            "is_partitioned": all(hasattr(p, "ds_tensor") for p in module.parameters()),
            "teacher_type": type(trainer.teacher_model).__name__,
            "zero_stage": getattr(trainer.teacher_model, "zero_optimization_stage", lambda: None)(),
            "plugin_configs": PLUGIN_CONFIGS,
            "sharded_logits": sharded_logits,
            "full_logits": full_logits,
            "state": trainer.model.state_dict() if hasattr(trainer.model, "state_dict") else None,
            "world_size": trainer.args.world_size,
            "fsdp_warning": any("FSDP was asked for" in message for message in warnings),
            "scores": {k: v for k, v in scores.items() if not any(timing in k for timing in TIMINGS)},
            "expected": expected,
            "whole": None if whole is None else {k: v.clone() for k, v in whole.state_dict().items()},
            "whole_type": type(whole).__name__,
            "teacher_moves": moves_before_sharded,
        },
        Path(output_dir) / f"rank{trainer.args.process_index}.pt",
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "sharded")
    end_distributed()
