"""Preview images from a pipeline's latents, cheaply: a linear map from latent channels to RGB.

A VAE decode per preview would cost about as much as a denoising step on a big
video model; a linear map costs a matrix product over one latent frame
(``C x h x w``) and an upscale, well under a millisecond on a GPU (see
``benchmarks/bench_diffusers.py``). The map is not hard-coded per model family: it
is learnt on the worker by least squares from what the pipeline itself produced,
the final latents of each finished request against its decoded first image or
frame (ridge-regularised normal equations, accumulated over requests, so each
request improves it). Until the first request has finished, a preview shows the
latents' first three channels, each stretched to its own range (false colour: the
layout, not the colours).

Latents must be ``(B, C, h, w)`` (images) or ``(B, C, T, h, w)`` / ``(B, T, C, h, w)``
(video; the channel axis is the one whose size is the VAE's latent channel count).
Packed latents (Flux, LTX: ``(B, tokens, C)``) have no spatial layout to show:
such pipelines run without previews.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["LatentPreviewer"]


class LatentPreviewer:
    """Latents -> a small RGB uint8 array (``H x W x 3``), learning its colours as it goes.

    Parameters
    ----------
    latent_channels:
        The VAE's latent channel count, to find the channel axis of 5-D latents
        (None: axis 1).
    scale_factor:
        Pixels per latent pixel (the VAE's spatial factor): previews are upscaled by
        it, to at most ``max_side`` on the long side.
    """

    def __init__(
        self, latent_channels: int | None = None, scale_factor: int = 8, max_side: int = 512
    ) -> None:
        self.latent_channels = latent_channels
        self.scale_factor = max(1, int(scale_factor))
        self.max_side = max_side
        self.ridge = 1e-3
        self.fits = 0  # requests learnt from
        self._xtx: torch.Tensor | None = None
        self._xty: torch.Tensor | None = None
        self._weights: torch.Tensor | None = None  # (C + 1, 3), float32

    def plane(self, latents: Any, frame: int | None = None) -> torch.Tensor | None:
        """One latent frame of the first item as ``(C, h, w)`` float32; None if not spatial.

        ``frame`` picks the latent frame of a video (default: the middle one).
        """
        if not isinstance(latents, torch.Tensor) or latents.ndim not in (4, 5):
            return None
        item = latents[0]
        if item.ndim == 4:  # (C, T, h, w) or (T, C, h, w)
            axis = 0
            if self.latent_channels and item.shape[0] != self.latent_channels:
                if item.shape[1] != self.latent_channels:
                    return None
                axis = 1
            frames = item.shape[1 - axis]
            index = frames // 2 if frame is None else min(frame, frames - 1)
            item = item[:, index] if axis == 0 else item[index]
        return item.float()

    def image(self, latents: Any) -> np.ndarray | None:
        """The preview of ``latents`` (middle frame of a video), or None when it has no layout."""
        plane = self.plane(latents)
        if plane is None:
            return None
        channels, h, w = plane.shape
        with torch.no_grad():
            if self._weights is not None and self._weights.shape[0] == channels + 1:
                weights = self._weights.to(plane.device)
                rgb = torch.einsum("chw,cd->dhw", plane, weights[:-1]) + weights[-1][:, None, None]
            else:
                rgb = _false_colour(plane)
            scale = min(self.scale_factor, self.max_side / max(h, w))
            size = (max(1, round(h * scale)), max(1, round(w * scale)))
            if size != (h, w):
                rgb = F.interpolate(rgb[None], size=size, mode="bilinear", align_corners=False)[0]
            pixels = (rgb.clamp(0, 1) * 255).round().to(torch.uint8)
        return pixels.permute(1, 2, 0).cpu().numpy()

    def learn(self, latents: Any, picture: np.ndarray) -> bool:
        """Fit the map on final ``latents`` and the decoded first image or frame (``H x W x 3`` uint8).

        Returns False (and learns nothing) when the latents have no layout.
        """
        plane = self.plane(latents, frame=0)
        if plane is None or picture.ndim != 3 or picture.shape[2] < 3:
            return False
        channels, h, w = plane.shape
        with torch.no_grad():
            target = torch.from_numpy(np.ascontiguousarray(picture[..., :3])).to(torch.float64)
            target = target.permute(2, 0, 1)[None] / 255.0
            target = F.adaptive_avg_pool2d(target, (h, w))[0].reshape(3, -1).T  # (N, 3)
            x = plane.detach().to("cpu", torch.float64).reshape(channels, -1).T  # (N, C)
            x = torch.cat([x, torch.ones(x.shape[0], 1, dtype=torch.float64)], dim=1)
            xtx, xty = x.T @ x, x.T @ target
            if self._xtx is None or self._xtx.shape != xtx.shape:
                self._xtx, self._xty, self.fits = xtx, xty, 0
            else:
                assert self._xty is not None
                self._xtx, self._xty = self._xtx + xtx, self._xty + xty
            eye = torch.eye(channels + 1, dtype=torch.float64)
            scale = float(self._xtx.diagonal().mean()) or 1.0
            solved = torch.linalg.solve(self._xtx + self.ridge * scale * eye, self._xty)
        self._weights = solved.to(torch.float32)
        self.fits += 1
        return True


def _false_colour(plane: torch.Tensor) -> torch.Tensor:
    """The first three channels, each stretched to [0, 1]: the layout, in made-up colours."""
    picked = plane[:3] if plane.shape[0] >= 3 else plane[:1].expand(3, -1, -1)
    low = picked.amin(dim=(1, 2), keepdim=True)
    high = picked.amax(dim=(1, 2), keepdim=True)
    return (picked - low) / (high - low).clamp_min(1e-6)
