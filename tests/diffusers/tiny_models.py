"""Test-only pipelines and helpers: the sample's tiny pipelines, plus a VAE with its own tqdm bar.

The workers import this module by name (they inherit the tests' ``sys.path``), so
its functions travel to them as ``build=`` references.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from diffusers import AutoencoderKL
from tqdm.auto import tqdm

from cosmos_gradio_nb.samples import tiny_diffusers as tiny

TILES = 4
TILE_SECONDS = 0.08  # stands for a tile's decoding work: long enough for tqdm to report


class TiledDecodeVAE(AutoencoderKL):  # type: ignore[misc]
    """An autoencoder whose decode runs an inner tqdm loop, as tiled VAE decoders do."""

    def decode(self, z: Any, *args: Any, **kwargs: Any) -> Any:
        for _ in tqdm(range(TILES), desc="decoding tiles", mininterval=0):
            time.sleep(TILE_SECONDS)
        return super().decode(z, *args, **kwargs)


def sd_with_tiled_vae() -> Any:
    """The tiny Stable Diffusion pipeline with :class:`TiledDecodeVAE` as its autoencoder."""
    vae = TiledDecodeVAE(
        block_out_channels=[16, 32],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        norm_num_groups=8,
    )
    return tiny.stable_diffusion(vae=vae)


def wait_for(cond: Callable[[], Any], timeout: float, what: str, every: float = 0.02) -> Any:
    """Poll ``cond`` until truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def video_info(path: str | Path) -> tuple[int, int, int, float, str]:
    """(frames, width, height, fps, codec) of an mp4, decoded with PyAV."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(video=0))
        return (
            frames,
            stream.codec_context.width,
            stream.codec_context.height,
            float(stream.average_rate or 0),
            stream.codec_context.name,
        )
