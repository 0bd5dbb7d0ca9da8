"""Process-group teardown for scripts run under torchrun / accelerate launch."""

from __future__ import annotations

import gc

import torch


def end_distributed() -> None:
    """Destroys the default process group, if any; call it last, on every rank.

    A rank that exits while another still holds a gloo process group (rank 0 measuring latency or pushing to the
    Hub, say) aborts at interpreter exit with "terminate called without an active exception" (SIGABRT), which fails
    the whole launch. Tearing the group down first lets each rank exit on its own time.

    Objects in reference cycles (a finished Trainer and the DDP reducer inside it) still hold the gloo group after
    it is destroyed; left to interpreter finalization, its worker threads are torn down with the interpreter and can
    abort the same way. Collecting them here frees the group while the interpreter is whole.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
        gc.collect()
