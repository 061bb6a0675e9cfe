"""In the worker: a pipeline's dtype, device, CPU offload and compiled denoiser.

Each rank sees only its own GPU (``CUDA_VISIBLE_DEVICES`` is one id), so "the
rank's GPU" is ``cuda:0``; without CUDA the pipeline runs on the CPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .options import FactoryOptions, dtype_name

__all__ = ["DENOISERS", "place", "torch_dtype"]

DENOISERS = ("transformer", "unet")  # the module that runs every step, where compiling pays


def torch_dtype(value: Any) -> Any:
    """``"bfloat16"`` (or torch.bfloat16, or ``{"transformer": "bf16", ...}``) as torch dtypes."""
    if value is None:
        return None
    import torch

    if isinstance(value, Mapping):
        return {key: torch_dtype(v) for key, v in value.items()}
    return getattr(torch, str(dtype_name(value)))


def place(pipe: Any, options: FactoryOptions) -> str:
    """Move ``pipe`` to its device (or offload it), compile its denoiser; the device's name."""
    import torch

    cuda = torch.cuda.is_available()
    device = options.device or ("cuda:0" if cuda else "cpu")
    if options.cpu_offload and device.startswith("cuda"):
        if options.cpu_offload == "sequential":
            pipe.enable_sequential_cpu_offload(device=device)
        else:
            pipe.enable_model_cpu_offload(device=device)
    else:
        if options.cpu_offload:
            print(
                f"diffusers: cpu_offload={options.cpu_offload!r} ignored: the pipeline runs on "
                f"{device}",
                flush=True,
            )
        pipe.to(device)
    if options.torch_compile:
        compiled = [name for name in DENOISERS if getattr(pipe, name, None) is not None]
        for name in compiled:
            getattr(pipe, name).compile()  # in place: the pipeline keeps its module
        if not compiled:
            print("diffusers: torch_compile: the pipeline has no transformer or unet", flush=True)
    return device
