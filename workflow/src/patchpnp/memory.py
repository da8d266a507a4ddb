"""Peak memory of a piece of work, on CUDA or on the CPU (ALGORITHMS.md section 7).

CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``,
minus what was allocated when the measurement started (the model, the inputs).

CPU: torch has no public CPU allocator statistics and tracemalloc does not see
its allocations, so the kernel's peak resident set (``VmHWM``) is used. Writing
5 to ``/proc/self/clear_refs`` resets that mark to the current resident set, so
the peak above the baseline counts only the measured work. Where the reset is not
allowed, ``ru_maxrss`` (the peak since the process started) is the fallback and
``how`` says so. Either way the measurement is only clean in a fresh process.
"""

from __future__ import annotations

import resource

import torch

__all__ = ["PeakMemory", "reset_peak_rss", "status_kib"]


def status_kib(field: str) -> int | None:
    """A ``/proc/self/status`` field in KiB (``VmRSS``, ``VmHWM``), or None where absent."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS; False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class PeakMemory:
    """Measure the peak memory above a baseline: ``start()``, do the work, ``stop()``.

    ``stop()`` returns ``(peak_mib, how)``; ``how`` names the mechanism
    (``cuda.max_memory_allocated``, ``VmHWM reset`` or ``ru_maxrss``).
    """

    def __init__(self, device: torch.device | str):
        self.device = torch.device(device)
        self._base = 0
        self._exact = False

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            return
        self._exact = reset_peak_rss()
        base = status_kib("VmRSS") if self._exact else None
        if base is None:
            self._exact = False
            base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self._base = base * 1024

    def stop(self) -> tuple[float, str]:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
            return (peak - self._base) / 2**20, "cuda.max_memory_allocated"
        peak_kib = status_kib("VmHWM") if self._exact else None
        how = "VmHWM reset"
        if peak_kib is None:
            peak_kib, how = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "ru_maxrss"
        return (peak_kib * 1024 - self._base) / 2**20, how
