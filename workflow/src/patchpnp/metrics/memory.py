"""Peak memory of a piece of work, total and working (docs/methods.md section 7).

:class:`PeakMemory` reports two figures in MiB for the work between ``start()`` and
``stop()``:

- **working**: the peak of the memory the work allocated, above what was allocated
  when it started (the loaded model, the inputs);
- **total**: everything the process (CPU) or this process on the device (CUDA) held
  at that peak: weights, interpreter / libraries / CUDA context, allocator pools and
  the working memory. This is the paper's Fig. 3 measure.

CUDA. Working: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``,
minus ``memory_allocated`` at the start. Total: the device memory outside torch's
caching allocator at the end (used memory from ``cudaMemGetInfo`` minus
``memory_reserved``: the context, loaded kernels, library handles; it only grows, so
the end bounds the peak's) plus the caching allocator's peak reservation
(``max_memory_reserved``, reset at the start). ``cudaMemGetInfo`` is device-wide, so
the total assumes the process has the device to itself, as a profile job does.

CPU. A resident-set high-water mark under-counts: memory freed earlier (during
warm-up, or by the work itself) is reused without the mark moving, so small tiles
read well under 1 MiB. Working is therefore counted at the allocator level: the torch
profiler (``profile_memory=True``) records every allocation (+bytes) and free
(-bytes) of torch's CPU allocator; the running sum of these in time order is the
live bytes the work allocated, and its maximum is the working peak. Frees of blocks
allocated before the start are not recorded, so they never lower it. Memory outside
torch's allocator (Python objects, numpy arrays, library scratch buffers) is not seen.
Total: the resident set at the start (``VmRSS``: interpreter, libraries, model, heap)
plus the working peak, an upper bound of the resident peak where the work reuses
free heap. The profiler records every operator, which slows the work down: time it
in a separate, unmeasured run. One fresh process per measured configuration keeps
earlier work out of the resident baseline.
"""

from __future__ import annotations

import resource
import sys
from collections.abc import Iterable
from typing import NamedTuple

import torch

__all__ = ["Peak", "PeakMemory", "live_bytes_peak", "resident_bytes", "status_kib"]
MIB = 2**20


class Peak(NamedTuple):
    total_mib: float
    working_mib: float
    how: str  # the mechanism, e.g. "torch.profiler memory events + VmRSS"


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


def resident_bytes() -> tuple[int, str]:
    """The process's resident set now (``VmRSS``) and its source; where ``/proc`` is
    missing, the peak resident set so far (``ru_maxrss``), which can only over-count."""
    kib = status_kib("VmRSS")
    if kib is not None:
        return kib * 1024, "VmRSS"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak * (1 if sys.platform == "darwin" else 1024), "ru_maxrss"  # macOS: bytes


def live_bytes_peak(events: Iterable[tuple[int, int]]) -> int:
    """Peak of the running sum of ``(time, signed bytes)`` allocator events, from 0."""
    live = peak = 0
    for _, nbytes in sorted(events, key=lambda e: e[0]):  # stable: ties keep record order
        live += nbytes
        peak = max(peak, live)
    return peak


def _cpu_memory_events(prof: torch.profiler.profile) -> list[tuple[int, int]]:
    # The raw kineto events hold every allocation and free; prof.events() folds the
    # ones inside an operator into its net usage, which hides peaks within an operator.
    return [
        (e.start_ns(), e.nbytes())
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU
    ]


class PeakMemory:
    """Measure a piece of work: ``start()``, do the work, ``stop()`` -> :class:`Peak`."""

    def __init__(self, device: torch.device | str):
        self.device = torch.device(device)

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            return
        self._base, self._rss_how = resident_bytes()
        act = [torch.profiler.ProfilerActivity.CPU]
        self._prof = torch.profiler.profile(activities=act, profile_memory=True)
        self._prof.start()

    def stop(self) -> Peak:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            working = torch.cuda.max_memory_allocated(self.device) - self._base
            free, size = torch.cuda.mem_get_info(self.device)
            outside = size - free - torch.cuda.memory_reserved(self.device)
            total = outside + torch.cuda.max_memory_reserved(self.device)
            how = "cuda.max_memory_allocated + mem_get_info"
            return Peak(total / MIB, working / MIB, how)
        self._prof.stop()
        working = live_bytes_peak(_cpu_memory_events(self._prof))
        self._prof = None  # the recorded events can be large: let them go
        how = f"torch.profiler memory events + {self._rss_how}"
        return Peak((self._base + working) / MIB, working / MIB, how)
