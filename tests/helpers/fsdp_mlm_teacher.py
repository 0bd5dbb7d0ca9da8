"""Run under `torchrun --nproc_per_node 2` (CPU, gloo): a masked-LM teacher, whose decoder is tied to its word
embeddings, sharded by hf-distill's FSDP2 path (`prepare_teacher`, as in fsdp_teacher.py).

    fsdp_mlm_teacher.py OUTPUT_DIR

Each rank saves the sharded teacher's logits over two forwards beside the unsharded reference's, and the token KL
sums of `chunked_token_sums` (the trainer's `token_kd_chunk_size` path: the teacher's head is called by the loss,
after the teacher's forward, on the counted positions its hook kept) with the sharded and with the unsharded teacher.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tiny  # noqa: E402
from fsdp_teacher import shard_with_fsdp2  # noqa: E402

from hf_distill import losses  # noqa: E402
from hf_distill.trainer.teacher import gather_whole  # noqa: E402
from hf_distill.trainer.token_heads import CountedPositions, chunked_token_sums, output_head  # noqa: E402


def token_kd(teacher, student_head, batch) -> torch.Tensor:
    """The chunked token KL sum, the teacher's head deferred by its hook and run by the loss, as the trainer does."""
    counted = CountedPositions()
    counted.attach(output_head(teacher))
    mask = losses.token_mask(batch["labels"], batch["attention_mask"], batch["input_ids"].shape, torch.device("cpu"))
    with torch.no_grad(), counted.selecting(mask, defer=True):
        teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    kept = counted.take(output_head(teacher))  # (N, D)
    student_hidden = torch.randn(kept.shape, generator=torch.Generator().manual_seed(5))
    kd, _ = chunked_token_sums(
        student_head=student_head, teacher_head=output_head(teacher), student_hidden=student_hidden,
        teacher_hidden=kept, labels=None, temperature=2.0, chunk_size=3,
    )  # fmt: skip
    counted.remove()
    return kd.detach()


def main(output_dir: str) -> None:
    dist.init_process_group("gloo")
    teacher = tiny.masked_lm(layers=2, seed=0, initializer_range=0.5)
    reference = tiny.masked_lm(layers=2, seed=0, initializer_range=0.5).eval().requires_grad_(False)
    student_head = copy.deepcopy(output_head(tiny.masked_lm(layers=1, seed=1)))
    # as the trainer asks with token_kd_chunk_size (the loss calls the teacher's head after the forward)
    sharded = shard_with_fsdp2(teacher, SimpleNamespace(device=torch.device("cpu")), keep_root_gathered=True)
    batch = tiny.collate([tiny.mlm_rows(6, seed=3)[i] for i in range(6)])
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.no_grad():
        logits = [sharded(**inputs).logits for _ in range(2)]
        full_logits = reference(**inputs).logits
    word = sharded.bert.embeddings.word_embeddings.weight
    # gathered whole on rank 0 (what the main process measures and describes after training), in its stored dtype
    half = shard_with_fsdp2(tiny.masked_lm(layers=2, seed=0).to(torch.bfloat16), SimpleNamespace(device="cpu"))
    whole = gather_whole(half)
    # without the chunked loss every unit, the root too, is resharded after its forward: nothing stays gathered
    default = shard_with_fsdp2(tiny.masked_lm(layers=2, seed=0, initializer_range=0.5), SimpleNamespace(device="cpu"))
    with torch.no_grad():
        default_logits = [default(**inputs).logits for _ in range(2)]
    torch.save(
        {
            "logits": logits,
            "full_logits": full_logits,
            "kd": token_kd(sharded, student_head, batch),
            "full_kd": token_kd(reference, student_head, batch),
            "layer_is_dtensor": hasattr(sharded.bert.encoder.layer[0].attention.self.query.weight, "to_local"),
            "tied": word is sharded.cls.predictions.decoder.weight,
            "whole_dtypes": None if whole is None else sorted({str(p.dtype) for p in whole.parameters()}),
            "whole_state": None if whole is None else {k: v.clone() for k, v in whole.state_dict().items()},
            "half_reference": {
                k: v.clone() for k, v in tiny.masked_lm(layers=2, seed=0).to(torch.bfloat16).state_dict().items()
            },
            "default_logits": default_logits,
            "default_root_is_dtensor": hasattr(default.bert.embeddings.word_embeddings.weight, "to_local"),
            "kept_root_is_dtensor": hasattr(word, "to_local"),
        },
        Path(output_dir) / f"rank{dist.get_rank()}.pt",
    )
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
