"""The facts a timing is recorded with: which CPU, how many threads, which torch, how busy.

A time measured on a busy machine is too slow; the load average beside it says whether the
machine was idle when the number was taken."""

import os
import platform
from pathlib import Path

import torch


def machine_facts(threads: int) -> dict:
    """CPU model, core and thread counts, platform, torch and Python versions, load average."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text()
                .splitlines() if line.startswith("model name")), platform.processor()) \
        if Path("/proc/cpuinfo").is_file() else platform.processor()
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "threads": threads,
            "platform": platform.platform(), "torch": torch.__version__,
            "python": platform.python_version(), "load_avg_1_5_15": os.getloadavg()}
