"""Run under `torchrun --nproc_per_node 2` (gloo, CPU), or alone: the teacher's logits on 41 unlabelled rows through
`teacher_logits_in_order`; each rank saves them and how many rows its teacher ran on.

    ddp_pseudo_labels.py OUTPUT_DIR
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import datasets
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tiny.py beside this script

import tiny  # noqa: E402
from transformers import TrainingArguments  # noqa: E402

from hf_distill.cli.distributed import end_distributed  # noqa: E402
from hf_distill.cli.transfer import teacher_logits_in_order  # noqa: E402


def main(output_dir: str) -> None:
    out = Path(output_dir)
    data = tiny.class_rows(41, seed=11).rows  # 41: the two ranks' shares differ in size (21 and 20)
    rows = datasets.Dataset.from_dict({"input_ids": [row["input_ids"] for row in data]})
    teacher = tiny.classifier(layers=1, seed=0, initializer_range=0.5).eval()
    seen: list[int] = []
    teacher.register_forward_hook(
        lambda _module, _args, kwargs, _output: seen.append(len(kwargs["input_ids"])), with_kwargs=True
    )
    with tempfile.TemporaryDirectory() as folder:
        args = TrainingArguments(
            output_dir=folder, use_cpu=True, report_to="none", disable_tqdm=True, per_device_eval_batch_size=4
        )
        logits = teacher_logits_in_order(teacher, rows, tiny.collate, args)
        rank = args.process_index
        out.mkdir(parents=True, exist_ok=True)
        torch.save({"logits": torch.as_tensor(logits), "rows_seen": sum(seen), "world_size": args.world_size},
                   out / f"rank{rank}.pt")  # fmt: skip
    end_distributed()


if __name__ == "__main__":
    main(sys.argv[1])
