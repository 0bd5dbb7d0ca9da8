"""Placing the frozen teacher for each Accelerate engine.

The teacher only runs forward passes, so it must never be wrapped for DDP (a frozen model has no gradients to
reduce, and DDP refuses it), never be handed to the optimizer, and never be saved. What it needs depends on the
engine (as read in transformers 5 and accelerate's source; tests/trainer checks each that runs on a CPU):

- one device or DDP: moved to the student's device; under bf16 its weights are stored in bf16 (autocast only caches
  casts of weights that require grad, so fp32 weights would be re-cast every step); otherwise in float32 (a
  half-precision checkpoint is cast up), and under fp16 autocast runs the matmuls in fp16 (fp16 weights risk
  overflow);
- DeepSpeed: its own inference engine, partitioned under ZeRO-3 (a teacher bigger than one GPU must fit);
- FSDP: sharded with the same plugin as the student, each unit resharded after its forward (the root's own weights
  stay gathered for the chunked token loss, which calls the teacher's head itself).
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType
from torch import nn

logger = logging.getLogger(__name__)

__all__ = [
    "freeze",
    "gather_for_main_process",
    "gather_whole",
    "is_engine_wrapped",
    "placed_teacher",
    "prepare_teacher",
]


def freeze(teacher: nn.Module) -> nn.Module:
    """Puts `teacher` in eval mode (no dropout) and turns off gradients for every parameter."""
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher


def prepare_teacher(
    teacher: nn.Module, accelerator: Accelerator, *, micro_batch_size: int = 1, keep_root_gathered: bool = False
) -> nn.Module:
    """Returns the frozen `teacher` ready to run forward passes under `accelerator`'s engine.

    Args:
        teacher (`nn.Module`): the teacher model; frozen in place.
        accelerator (`Accelerator`): the Trainer's accelerator (device, mixed precision, engine).
        micro_batch_size (`int`): per-device batch size, which DeepSpeed's config must state.
        keep_root_gathered (`bool`): under FSDP2, keep the root unit's own weights (heads, embeddings tied to a
            head) gathered after the forward, for a loss that calls the teacher's head itself afterwards (the
            chunked token loss, `token_kd_chunk_size`); otherwise every unit is resharded after its forward.
    """
    freeze(teacher)
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        return _prepare_deepspeed(teacher, accelerator, micro_batch_size)
    if accelerator.distributed_type == DistributedType.FSDP:
        return _prepare_fsdp(teacher, accelerator, keep_root_gathered=keep_root_gathered)
    placed = getattr(teacher, "hf_device_map", None) or {}
    if len(set(placed.values())) > 1:
        # loaded with device_map="auto" over several devices (accelerate's hooks move the activations): kept so
        logger.info("The teacher stays where its device_map put it: %s.", sorted(set(map(str, placed.values()))))
        return teacher
    on_meta = [name for name, tensor in (*teacher.named_parameters(), *teacher.named_buffers()) if tensor.is_meta]
    if on_meta:  # .to() below failed with "Cannot copy out of meta tensor; no data!"
        raise ValueError(
            f"The teacher's weights are on the meta device ({len(on_meta)} of them, the first {on_meta[0]!r}): it was "
            "built without them (torch.device('meta'), init_empty_weights) and never loaded. Load the teacher with "
            "from_pretrained (a device_map that offloads it to several devices is kept as it is)."
        )
    if getattr(teacher, "is_quantized", False) or getattr(teacher, "quantization_method", None) is not None:
        # an 8-bit or 4-bit teacher (bitsandbytes, GPTQ...) runs as loaded: transformers refuses any dtype cast of it
        return teacher.to(device=accelerator.device)
    dtype = torch.bfloat16 if accelerator.mixed_precision == "bf16" else None
    if dtype is None and any(p.dtype in (torch.float16, torch.bfloat16) for p in teacher.parameters()):
        # a half-precision checkpoint (transformers 5 loads it as stored): float32 weights, as the training's, with
        # autocast doing fp16 matmuls under fp16 (fp16 weights risk overflow)
        logger.info("The teacher's half-precision weights are cast to float32 (the training runs without bf16).")
        dtype = torch.float32
    return teacher.to(device=accelerator.device, **({"dtype": dtype} if dtype is not None else {}))


def _prepare_deepspeed(teacher: nn.Module, accelerator: Accelerator, micro_batch_size: int) -> nn.Module:
    import deepspeed

    plugin = accelerator.state.deepspeed_plugin
    config = copy.deepcopy(plugin.deepspeed_config)
    # Inference only: no optimizer, scheduler or optimizer offload; and never accelerator.prepare(teacher), which
    # would rebind accelerator.backward to the teacher's engine.
    for key in ("optimizer", "scheduler"):
        config.pop(key, None)
    zero = config.setdefault("zero_optimization", {})
    zero.pop("offload_optimizer", None)
    stage = zero.get("stage", 0)
    if stage != 3:
        # ZeRO-1/2 shard only optimizer state and gradients, which a frozen teacher has none of: replicate it.
        zero["stage"] = 0
    else:
        hidden_size = _hidden_size(teacher)
        if hidden_size is not None:
            # The "auto" values Trainer fills in for the student, sized for this model instead.
            defaults = {
                "reduce_bucket_size": hidden_size * hidden_size,
                "stage3_prefetch_bucket_size": int(0.9 * hidden_size * hidden_size),
                "stage3_param_persistence_threshold": 10 * hidden_size,
            }
            for key, value in defaults.items():
                if zero.get(key, "auto") == "auto":
                    zero[key] = value
    config["train_micro_batch_size_per_gpu"] = micro_batch_size
    config.pop("train_batch_size", None)
    config["gradient_accumulation_steps"] = 1
    config.pop("gradient_clipping", None)
    for precision in ("bf16", "fp16"):
        config[precision] = {"enabled": accelerator.mixed_precision == precision}
    engine, *_ = deepspeed.initialize(model=teacher, config=config)
    engine.eval()
    return engine


def _prepare_fsdp(teacher: nn.Module, accelerator: Accelerator, *, keep_root_gathered: bool = False) -> nn.Module:
    plugin = accelerator.state.fsdp_plugin
    layer_classes = _no_split_classes(teacher)
    if getattr(plugin, "fsdp_version", 1) == 2:
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        # no teacher.to(device) first: fully_shard moves each module's own weights to the mesh's device as it shards
        # them, so a teacher bigger than one GPU is never whole on one
        kwargs = {"reshard_after_forward": True}
        if accelerator.mixed_precision in ("bf16", "fp16"):
            dtype = torch.bfloat16 if accelerator.mixed_precision == "bf16" else torch.float16
            kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32)
        # Shard each transformer layer, then the root: a forward-only module otherwise stays gathered. A unit
        # holding a tied weight (a masked LM's word embeddings, tied to its decoder) is left to the root, whose
        # unit holds both ends: FSDP2 refuses one parameter in two units.
        tied = _tied_parameter_ids(teacher)
        for module in teacher.modules():
            if isinstance(module, layer_classes) and not any(id(p) in tied for p in module.parameters()):
                fully_shard(module, **kwargs)
        # The chunked token loss calls the teacher's vocabulary head itself, after the forward and again in the
        # backward's recompute: its root unit then stays gathered (a forward-only module is never resharded after).
        fully_shard(teacher, **{**kwargs, "reshard_after_forward": not keep_root_gathered})
        return teacher

    import functools

    from torch.distributed.fsdp import FullyShardedDataParallel, MixedPrecision
    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

    mixed_precision = None
    if accelerator.mixed_precision in ("bf16", "fp16"):
        dtype = torch.bfloat16 if accelerator.mixed_precision == "bf16" else torch.float16
        mixed_precision = MixedPrecision(param_dtype=dtype, reduce_dtype=dtype, buffer_dtype=dtype)
    # The plugin's own wrap policy was built from the student's layer classes; the teacher's may differ.
    policy = functools.partial(transformer_auto_wrap_policy, transformer_layer_cls=set(layer_classes))
    return FullyShardedDataParallel(
        teacher,
        auto_wrap_policy=policy,
        mixed_precision=mixed_precision,
        sharding_strategy=plugin.sharding_strategy,
        device_id=accelerator.device,
        use_orig_params=True,
    )


def is_engine_wrapped(model: nn.Module) -> bool:
    """True for a model an engine placed itself: sharded by FSDP2 or FSDP1, or inside a DeepSpeed engine."""
    try:
        from torch.distributed.fsdp import FSDPModule, FullyShardedDataParallel
    except ImportError:  # a torch without distributed support wraps nothing
        return False
    model = getattr(model, "_orig_mod", model)  # under torch.compile
    return isinstance(model, (FSDPModule, FullyShardedDataParallel)) or type(model).__name__ == "DeepSpeedEngine"


def gather_whole(model: nn.Module) -> nn.Module | None:
    """A whole copy of a model an engine sharded (the teacher `prepare_teacher` placed under FSDP2, FSDP1 or
    DeepSpeed, or a student Accelerate placed), on the main process's CPU.

    For what runs on the main process alone after training (the latency table, an export): a sharded model's
    forward there would wait forever for the other ranks' shards. Every rank must call it (the shards are
    gathered); the other ranks get None. A model no engine wrapped comes back as it is, on every rank.
    """
    if not is_engine_wrapped(model):
        return model
    import torch.distributed as dist
    from torch.distributed.fsdp import FSDPModule

    main = not dist.is_initialized() or dist.get_rank() == 0
    model = getattr(model, "_orig_mod", model)  # under torch.compile
    if type(model).__name__ == "DeepSpeedEngine":
        import deepspeed

        module = model.module
        keys = set(module.state_dict())  # the names only: under ZeRO-3 each rank's tensors are partitions
        state = {}
        # One parameter at a time (a model that needed ZeRO-3 may not fit on one GPU whole); tied ones under
        # each name they have; only the main process keeps a copy.
        for name, parameter in module.named_parameters(remove_duplicate=False):
            with deepspeed.zero.GatheredParameters([parameter], modifier_rank=None):
                if main and name in keys:
                    state[name] = parameter.detach().to("cpu", copy=True)
        if main:
            for name, buffer in module.named_buffers(remove_duplicate=False):
                if name in keys:
                    state[name] = buffer.detach().to("cpu", copy=True)
    else:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        module = model if isinstance(model, FSDPModule) else model.module  # FSDP1: the wrapped module
        state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if not main:
        return None
    # FSDP2 swaps the module's class for a subclass of FSDPModule, in place: build the class it had before.
    model_class = next(cls for cls in type(module).__mro__ if not issubclass(cls, FSDPModule))
    whole = model_class(copy.deepcopy(module.config))
    # built in float32 whatever the config says: stored as the sharded model was (a bf16 teacher stays bf16)
    dtype = next((tensor.dtype for tensor in state.values() if tensor.is_floating_point()), None)
    whole.to(dtype=dtype).load_state_dict(state)
    return freeze(whole)


def placed_teacher(trainer: Any, teacher: nn.Module) -> nn.Module:
    """The teacher as `trainer` placed it where an engine sharded it (every rank scores it in place), else
    `teacher`."""
    placed = getattr(trainer, "teacher_model", None)
    return placed if placed is not None and is_engine_wrapped(placed) else teacher


def gather_for_main_process(trainer: Any, teacher: nn.Module) -> tuple[nn.Module | None, nn.Module | None]:
    """The teacher and the trained student whole, for what the main process alone runs after training (latency, an
    export, the card): a sharded forward there would wait forever for the other ranks. Every rank must call it."""
    student = trainer.model_wrapped
    return (
        gather_whole(placed_teacher(trainer, teacher)),
        gather_whole(student) if is_engine_wrapped(student) else trainer.model,
    )


def _hidden_size(model: nn.Module) -> int | None:
    config = getattr(model, "config", None)
    return getattr(config, "hidden_size", None) or getattr(config, "dim", None)


def _tied_parameter_ids(model: nn.Module) -> set[int]:
    """The ids of parameters registered under more than one name (tied weights)."""
    seen: dict[int, int] = {}
    for _, parameter in model.named_parameters(remove_duplicate=False):
        seen[id(parameter)] = seen.get(id(parameter), 0) + 1
    return {key for key, count in seen.items() if count > 1}


def _no_split_classes(model: nn.Module) -> tuple[type, ...]:
    names = set(getattr(model, "_no_split_modules", None) or [])
    classes = {type(module) for module in model.modules() if type(module).__name__ in names}
    if not classes:
        raise ValueError(
            f"Cannot shard the teacher ({type(model).__name__}) with FSDP: it declares no `_no_split_modules` "
            "(its transformer layer classes). Use a transformers model, or DDP/DeepSpeed for this teacher."
        )
    return tuple(classes)
