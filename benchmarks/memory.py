"""Peak memory of a block of code, for the benchmark scripts."""

from __future__ import annotations

import threading

import torch

__all__ = ["PeakMemory"]


class PeakMemory:
    """Peak memory above the start of a block: CUDA tensors on a GPU, sampled resident set size on a CPU."""

    def __init__(self, cuda: bool):
        self.cuda = cuda
        self.peak = 0

    def __enter__(self):
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
            return self
        import psutil

        process = psutil.Process()
        self.start = process.memory_info().rss
        self.peak = self.start
        self.stop = threading.Event()

        def sample():
            while not self.stop.wait(0.005):
                self.peak = max(self.peak, process.memory_info().rss)

        self.thread = threading.Thread(target=sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self.stop.set()
            self.thread.join()
        self.delta = self.peak - self.start
