"""How many threads TVM's runtime uses when the user has not said: one per physical core.

Without ``TVM_NUM_THREADS`` or ``OMP_NUM_THREADS``, TVM sizes its thread pool at half the logical
CPUs on x86 (``threading::MaxConcurrency``: "ignore hyper-threading"), assuming two hardware threads
per core. Cloud VMs often give one thread per core (``lscpu``: "Thread(s) per core: 1"), and there the
halving leaves cores idle: on a 2-vCPU AMD EPYC VM TVM ran one thread, and the digits CNN took 46 us
per call against 16.6 us with ``TVM_NUM_THREADS=2``, although graphopt had compiled it for two cores.

So, before TVM's pool starts (it is created at the first parallel kernel, not at import), graphopt
sets ``TVM_NUM_THREADS`` to the physical cores this process may run on, counted from the kernel's CPU
topology: the same count as TVM's halving on a machine with two threads per core, the right one
elsewhere. A value the user set (either variable) is left alone, and compiled schedules assume the
same count (``runtime_threads``).
"""

from __future__ import annotations

import os
from pathlib import Path

TOPOLOGY = Path("/sys/devices/system/cpu")


def usable_cpus() -> list[int]:
    """The logical CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def physical_cores(topology: Path = TOPOLOGY) -> int:
    """Distinct (package, core) pairs among the usable CPUs; the number of usable CPUs where the
    topology cannot be read (not Linux, or a container hiding ``/sys``)."""
    cpus = usable_cpus()
    cores = set()
    for cpu in cpus:
        base = topology / f"cpu{cpu}" / "topology"
        try:
            cores.add(((base / "physical_package_id").read_text().strip(), (base / "core_id").read_text().strip()))
        except OSError:
            return max(len(cpus), 1)
    return max(len(cores), 1)


def runtime_threads() -> int:
    """The threads TVM's pool runs with in this process: the user's ``TVM_NUM_THREADS`` or
    ``OMP_NUM_THREADS`` (TVM reads them in that order), else the physical cores."""
    for name in ("TVM_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return physical_cores()


def configure_default_threads() -> None:
    """Set ``TVM_NUM_THREADS`` to ``runtime_threads()`` unless the user set a thread count."""
    if not any(os.environ.get(name, "").strip() for name in ("TVM_NUM_THREADS", "OMP_NUM_THREADS")):
        os.environ["TVM_NUM_THREADS"] = str(physical_cores())
