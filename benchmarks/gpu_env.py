"""Print, as one JSON line after ``ENV``, what this machine offers brainlit: GPU, CUDA, nvcc, modules.

Run by ``gpu_check.py``'s ``environment`` step, after the wheels are installed.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess

import torch

MODULES = [
    "torch", "lightning", "torchmetrics", "jsonargparse", "docstring_parser", "typeshed_client",
    "nilearn", "nibabel", "neuroCombat", "h5py", "scipy", "numpy", "pandas", "sklearn", "joblib", "matplotlib",
    "tensorboard", "tqdm", "pytest", "mamba_ssm",
]  # fmt: skip


def module_versions() -> dict[str, str]:
    """Version of each module brainlit and its checks import, or why it does not import."""
    found = {}
    for name in MODULES:
        try:
            found[name] = str(getattr(importlib.import_module(name), "__version__", "yes"))
        except Exception as error:  # a broken install is as useful to report as a missing one
            found[name] = f"missing: {type(error).__name__}: {error}"[:200]
    return found


def nvcc_release() -> str | None:
    """``nvcc --version``'s release number, or None without nvcc."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return None
    text = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
    match = re.search(r"release ([\d.]+)", text)
    return match.group(1) if match else text.strip()[-60:]


def main() -> None:
    gpu = torch.cuda.is_available()
    report = {
        "gpu": torch.cuda.get_device_name(0) if gpu else None,
        "capability": ".".join(map(str, torch.cuda.get_device_capability(0))) if gpu else None,
        "torch": torch.__version__, "cuda": torch.version.cuda,
        "bf16": gpu and torch.cuda.is_bf16_supported(), "nvcc": nvcc_release(),
        "modules": module_versions(),
    }  # fmt: skip
    print("ENV" + json.dumps(report))


if __name__ == "__main__":
    main()
