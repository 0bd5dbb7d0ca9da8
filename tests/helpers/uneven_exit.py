"""Run under `torchrun --nproc_per_node 2`: rank 0 outlives rank 1, as when rank 0 measures latency or pushes.

    uneven_exit.py teardown|no-teardown

Without `end_distributed()` (`no-teardown`) rank 1 can abort at exit (SIGABRT) while rank 0 still holds the gloo group.
"""

from __future__ import annotations

import sys
import time

import torch

from hf_distill.cli.distributed import end_distributed

torch.distributed.init_process_group("gloo")
rank = torch.distributed.get_rank()
for _ in range(20):
    total = torch.ones(1000)
    torch.distributed.all_reduce(total)
    assert torch.equal(total, torch.full((1000,), 2.0))
if sys.argv[1] == "teardown":
    end_distributed()
    assert not torch.distributed.is_initialized(), "end_distributed() left the process group alive"
if rank == 0:
    time.sleep(2.0)
