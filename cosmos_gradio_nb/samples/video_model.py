"""The sample model: animate a still into a short H.264 video with torch.

It is small enough to run on a laptop CPU yet exercises everything a real
generative model does behind cosmos_gradio_nb: setup in the constructor
(device choice, ``torch.distributed`` from the environment), per-step progress
reports, files written into the request's folder, and ranks that split the work
and gather it to rank 0.

The still is an uploaded image or a landscape drawn procedurally from the
prompt (palette) and the seed (shapes). Each frame samples it through
``affine_grid`` + ``grid_sample`` with an eased zoom, pan and rotation, so
frame ``i`` depends only on the request, never on which rank drew it.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .._worker.progress import report_progress
from .params import SKIP_ASSET_CHECK, SampleParams

__all__ = ["SampleVideoModel", "create_worker", "draw_scene", "frame_slices", "frame_theta"]

DEVICE_ENV = "COSMOS_SAMPLE_DEVICE"  # force a device ("cpu", "cuda:0"); default: CUDA if present
_MAX_EXTENT = 3.0  # the procedural canvas covers at most 3x the frame per axis
_MAX_CANVAS_PIXELS = 16_000_000  # ~190 MB of float32 RGB


def create_worker() -> SampleVideoModel:
    """The factory the engine calls once in every worker process."""
    return SampleVideoModel()


class SampleVideoModel:
    """Animate an image, or a scene drawn from the prompt, into ``video.mp4`` and ``poster.png``.

    Parameters
    ----------
    device:
        Torch device to render on. Default: the ``COSMOS_SAMPLE_DEVICE`` environment
        variable, else ``cuda:0`` when CUDA is available (the engine shows each rank
        exactly one GPU through ``CUDA_VISIBLE_DEVICES``), else ``cpu``.

    Notes
    -----
    With ``WORLD_SIZE`` > 1 in the environment (the engine sets ``RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` as torchrun does) the
    constructor joins the process group (NCCL on CUDA, gloo on CPU) unless one is
    already initialised; :meth:`close` leaves it again.
    """

    def __init__(self, device: str | None = None) -> None:
        chosen = device or os.environ.get(DEVICE_ENV) or None
        if chosen is None:
            chosen = "cuda:0" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(chosen)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.rank = 0
        self.world_size = 1
        self._owns_group = False
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            import torch.distributed as dist

            if not dist.is_available():
                raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
            if not dist.is_initialized():
                backend = "nccl" if self.device.type == "cuda" else "gloo"
                dist.init_process_group(backend=backend, init_method="env://")
                self._owns_group = True
            self.rank = dist.get_rank()
            self.world_size = dist.get_world_size()
        print(f"sample video model ready on {self.device} (rank {self.rank}/{self.world_size})")

    def close(self) -> None:
        """Leave the process group if this model created it (idempotent)."""
        if self._owns_group:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
            self._owns_group = False

    def infer(self, args: dict[str, Any]) -> dict[str, Any]:
        """Render one request.

        Parameters
        ----------
        args:
            The request: keys of :class:`SampleParams` plus ``output_dir`` (set by
            the engine; a fresh temporary folder when missing). Every rank of a
            group receives the same dict.

        Returns
        -------
        dict
            On rank 0: ``videos`` and ``images`` (absolute paths), ``num_frames``,
            ``fps``, ``width``, ``height``, ``device``, ``world_size``,
            ``cuda_visible_devices`` (as this worker sees it) and on CUDA ``gpu_name``
            (what ``cosmos-gradio-nb doctor`` checks). Other ranks return ``{}``.
        """
        # The UI process already checked the asset folders; here only types, ranges
        # and readability matter (the worker's environment may list other folders).
        p = SampleParams.model_validate(args, context={SKIP_ASSET_CHECK: True})
        n = p.num_frames
        start, stop = frame_slices(n, self.world_size)[self.rank]
        if self.world_size == 1:
            print(f"rendering {n} frames {p.width}x{p.height} on {self.device} (rank 0/1)")
        else:
            mine = f"frames {start}-{stop - 1}" if stop > start else "none"
            print(
                f"rendering {mine} of {n} {p.width}x{p.height} on "
                f"{self.device} (rank {self.rank}/{self.world_size})"
            )
        renderer = _Renderer(p, self.device)
        if self.world_size == 1:
            frames: Iterator[torch.Tensor] = renderer.frames(
                start, stop, lambda i: report_progress((i + 1) / n, f"frame {i + 1}/{n}")
            )
        else:
            gathered = self._render_distributed(renderer, n, start, stop)
            if gathered is None:
                return {}
            frames = iter(gathered)
        out_dir = Path(args.get("output_dir") or tempfile.mkdtemp(prefix="cosmos_sample_"))
        out_dir = out_dir.expanduser().resolve()
        out_dir.mkdir(parents=True, exist_ok=True)
        video, poster = out_dir / "video.mp4", out_dir / "poster.png"
        first = encode_mp4(frames, video, p.fps, p.width, p.height)
        _save_png(first, poster)
        return {
            "videos": [str(video)],
            "images": [str(poster)],
            "num_frames": n,
            "fps": p.fps,
            "width": p.width,
            "height": p.height,
            "device": str(self.device),
            "world_size": self.world_size,
            **self._placement(),
        }

    def _placement(self) -> dict[str, Any]:
        """Where this worker runs, as it sees it: its CUDA_VISIBLE_DEVICES and GPU's name."""
        out: dict[str, Any] = {"cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
        if self.device.type == "cuda":
            out["gpu_name"] = torch.cuda.get_device_name(self.device)
        return out

    def _render_distributed(
        self, renderer: _Renderer, n: int, start: int, stop: int
    ) -> torch.Tensor | None:
        """Render this rank's slice and gather every slice to rank 0 (None elsewhere)."""
        import torch.distributed as dist

        slices = frame_slices(n, self.world_size)
        pad = max(1, max(b - a for a, b in slices))  # gather needs equal sizes
        mine = stop - start
        steps = mine + 1  # rank 0's bar: its own frames, then the gather
        local = torch.zeros(
            (pad, renderer.height, renderer.width, 3), dtype=torch.uint8, device=self.device
        )

        def progress(i: int) -> None:
            if self.rank == 0:
                report_progress((i - start + 1) / steps, f"frame {i - start + 1}/{mine} of rank 0")

        for j, frame in enumerate(renderer.frames(start, stop, progress)):
            local[j] = frame
        if self.rank != 0:
            dist.gather(local, None, dst=0)
            return None
        buckets = [torch.empty_like(local) for _ in range(self.world_size)]
        dist.gather(local, buckets, dst=0)
        report_progress(1.0, f"gathered {n} frames from {self.world_size} ranks")
        return torch.cat([buckets[r][: b - a] for r, (a, b) in enumerate(slices)])

    def render_frames(self, args: dict[str, Any]) -> torch.Tensor:
        """Every frame of a request as a ``(N, H, W, 3)`` uint8 CPU tensor, without writing files.

        For tests and notebooks that want the pixels; no progress, no delay.
        """
        p = SampleParams.model_validate(
            {**args, "frame_delay": 0}, context={SKIP_ASSET_CHECK: True}
        )
        renderer = _Renderer(p, self.device)
        return torch.stack([f.cpu() for f in renderer.frames(0, p.num_frames, None)])


def frame_slices(num_frames: int, world_size: int) -> list[tuple[int, int]]:
    """Contiguous ``[start, stop)`` frame ranges, one per rank, sizes differing by at most one."""
    bounds = [r * num_frames // world_size for r in range(world_size + 1)]
    return list(itertools.pairwise(bounds))


def _ease(t: float) -> float:
    """Smoothstep, so the camera starts and stops gently."""
    return t * t * (3.0 - 2.0 * t)


def frame_theta(
    i: int, n: int, p: SampleParams, extent: float, ease: Callable[[float], float] = _ease
) -> torch.Tensor:
    """The ``(1, 2, 3)`` affine matrix mapping frame ``i``'s pixels into the canvas.

    The camera goes from identity (frame 0) to ``zoom``, ``pan`` and ``rotation``
    (last frame). Rotation is done in pixel-proportional coordinates so a
    non-square frame turns without shearing; ``extent`` is how many half-frames
    the canvas spans on each side (1 for an image, more for the procedural scene).
    """
    s = ease(i / (n - 1)) if n > 1 else 0.0
    z = p.zoom**s
    angle = math.radians(p.rotation * s)
    c, si = math.cos(angle), math.sin(angle)
    a = p.width / p.height
    e = extent
    return torch.tensor(
        [
            [
                [c / (z * e), -si / (z * a * e), p.pan[0] * s / e],
                [si * a / (z * e), c / (z * e), p.pan[1] * s / e],
            ]
        ],
        dtype=torch.float32,
    )


def _needed_extent(p: SampleParams) -> float:
    """How far (in half-frames) any frame's corners reach into the canvas."""
    reach = 1.0
    for i in range(p.num_frames):
        theta = frame_theta(i, p.num_frames, p, 1.0)[0]
        for x in (-1.0, 1.0):
            for y in (-1.0, 1.0):
                pt = theta @ torch.tensor([x, y, 1.0])
                reach = max(reach, float(pt.abs().max()))
    return reach


class _Renderer:
    """The still (canvas) for one request, and its frames."""

    def __init__(self, p: SampleParams, device: torch.device) -> None:
        self.p = p
        self.device = device
        self.width, self.height = p.width, p.height
        sharpen = max(1.0, p.zoom)  # enough canvas pixels that the last frame stays crisp
        if p.image:
            self.extent = 1.0
            self.canvas = load_image(p.image, p.width, p.height, sharpen).to(device)
            self.vignette: torch.Tensor | None = None
        else:
            self.extent = min(_MAX_EXTENT, _needed_extent(p) * 1.01)
            cw, ch = (self.extent * sharpen * p.width, self.extent * sharpen * p.height)
            q = min(1.0, math.sqrt(_MAX_CANVAS_PIXELS / (cw * ch)))
            size = (max(2, round(ch * q)), max(2, round(cw * q)))
            self.canvas = draw_scene(p.prompt, p.seed, size, self.extent * p.width / p.height)
            self.canvas = self.canvas.to(device)
            self.vignette = _vignette(p.height, p.width).to(device)

    def frames(
        self, start: int, stop: int, on_frame: Callable[[int], None] | None
    ) -> Iterator[torch.Tensor]:
        """Frames ``start..stop-1`` as ``(H, W, 3)`` uint8 tensors on the device."""
        p = self.p
        for i in range(start, stop):
            theta = frame_theta(i, p.num_frames, p, self.extent).to(self.device)
            grid = F.affine_grid(theta, [1, 3, p.height, p.width], align_corners=False)
            out = F.grid_sample(
                self.canvas[None], grid, mode="bilinear", padding_mode="reflection",
                align_corners=False,
            )[0]  # fmt: skip
            if self.vignette is not None:
                out = out * self.vignette
            yield (out.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0)
            if p.frame_delay:
                time.sleep(p.frame_delay)  # the documented testing knob
            if on_frame is not None:
                on_frame(i)


def load_image(path: str, width: int, height: int, sharpen: float = 1.0) -> torch.Tensor:
    """An image file as a ``(3, h, w)`` float tensor in [0, 1], cropped to the frame's aspect.

    It is kept up to ``sharpen`` times the frame size (never above the file's own
    resolution) so zooming in does not blur it.
    """
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        rgb = ImageOps.exif_transpose(img).convert("RGB")
    scale = max(1.0, min(sharpen, rgb.width / width, rgb.height / height))
    size = (round(width * scale), round(height * scale))
    fitted = ImageOps.fit(rgb, size, Image.Resampling.LANCZOS)
    data = torch.frombuffer(bytearray(fitted.tobytes()), dtype=torch.uint8)
    return data.view(size[1], size[0], 3).permute(2, 0, 1).float() / 255.0


def _hsv(h: float, s: float, v: float) -> torch.Tensor:
    import colorsys

    return torch.tensor(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=torch.float32)[:, None, None]


def _mix(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    return a + (b - a) * t


def _smooth(
    edge0: float | torch.Tensor, edge1: float | torch.Tensor, x: torch.Tensor
) -> torch.Tensor:
    t = ((x - edge0) / (edge1 - edge0)).clamp(0, 1)
    return t * t * (3 - 2 * t)


def draw_scene(prompt: str, seed: int, size: tuple[int, int], half_width: float) -> torch.Tensor:
    """A misty layered landscape at dusk, as a ``(3, H, W)`` float tensor in [0, 1].

    The prompt's hash picks the palette and the sun's height; the seed drives a
    CPU ``torch.Generator`` for ridge shapes, clouds and stars, so the picture is
    the same on every device and rank. Coordinates: ``v`` runs from
    ``-half_height`` (top) to ``+half_height``, one unit being half the frame's
    height; ``u`` spans ``[-half_width, half_width]``.
    """
    h, w = size
    half_height = half_width * h / w
    digest = hashlib.sha256(prompt.encode("utf-8")).digest()
    byte = [b / 255.0 for b in digest]
    gen = torch.Generator().manual_seed(int(seed))

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(shape, generator=gen)

    v = torch.linspace(-half_height, half_height, h)[:, None].expand(h, w)
    u = torch.linspace(-half_width, half_width, w)[None, :].expand(h, w)
    px = 2 * half_height / h  # one canvas pixel, for anti-aliased edges

    hue = _prompt_hue(prompt, byte[0])
    warm = hue + 0.06 * (byte[1] - 0.5)
    zenith = _hsv(hue + 0.58 + 0.08 * byte[2], 0.6 + 0.3 * byte[3], 0.12 + 0.1 * byte[4])
    # Pure hues at full brightness look like neon; a touch of peach reads as evening light.
    glow = _mix(_hsv(warm, 0.65 + 0.25 * byte[5], 1.0), _hsv(0.07, 0.35, 1.0), 0.3)
    mid = _hsv(hue + 0.03, 0.65, 0.55)
    haze = _hsv(warm + 0.03, 0.3 + 0.2 * byte[6], 0.95)
    shadow = _hsv(hue + 0.62 + 0.08 * byte[7], 0.5 + 0.3 * byte[8], 0.06 + 0.05 * byte[9])
    horizon = 0.15 + 0.2 * byte[10]

    # Sky: deep zenith to a glowing horizon.
    sky_t = _smooth(-1.6, horizon, v) ** 1.6
    img = _mix(_mix(zenith, mid, _smooth(0.0, 0.6, sky_t)), glow, _smooth(0.4, 1.0, sky_t))

    # Stars, fading out towards the horizon.
    n_stars = 60 + int(byte[11] * 90)
    star_u = (rand(n_stars) * 2 - 1) * half_width
    star_v = -half_height + rand(n_stars) * (half_height + horizon - 0.3)
    star_r = 0.002 + 0.006 * rand(n_stars) ** 4
    star_b = 0.25 + 0.75 * rand(n_stars) ** 2
    stars = torch.zeros(h, w)
    for su, sv, sr, sb in zip(star_u, star_v, star_r, star_b, strict=True):
        y0, y1 = _rows(float(sv), float(sr) * 4, half_height, h)
        x0, x1 = _rows(float(su), float(sr) * 4, half_width, w)
        if y1 <= y0 or x1 <= x0:
            continue
        d2 = (u[y0:y1, x0:x1] - su) ** 2 + (v[y0:y1, x0:x1] - sv) ** 2
        stars[y0:y1, x0:x1] += sb * torch.exp(-d2 / (2 * (sr + px) ** 2))
    img = img + stars.clamp(0, 1) * (1 - sky_t) * 0.9

    # Sun with a wide halo, sitting on the horizon.
    sun_u = (rand(1).item() * 1.2 - 0.6) * min(half_width, 1.6)
    sun_v = horizon - 0.25 - 0.35 * byte[12]
    sun_r = 0.12 + 0.06 * byte[13]
    dist = torch.sqrt((u - sun_u) ** 2 + (v - sun_v) ** 2)
    sun_col = _hsv(warm + 0.02, 0.12, 1.0)
    img = img * (1 - 0.25 * torch.exp(-(((dist - sun_r) / 0.12) ** 2)))  # darker ring: contrast
    img = img + glow * (0.35 * torch.exp(-((dist / 0.9) ** 2)) + 0.2 * torch.exp(-dist / 0.15))
    limb = 0.85 + 0.15 * (1 - (dist / sun_r).clamp(0, 1) ** 2)
    img = _mix(img, sun_col * limb, 1 - _smooth(sun_r - px, sun_r + px, dist))

    # Long thin clouds lit from below.
    for _ in range(5 + int(byte[14] * 5)):
        cu = (rand(1).item() * 2 - 1) * half_width
        cv = -0.9 + rand(1).item() * (horizon + 0.6)
        length, thick = 0.4 + 0.9 * rand(1).item(), 0.02 + 0.04 * rand(1).item()
        wave = 0.03 * torch.sin(u * (3 + 4 * rand(1).item()) + 6.28 * rand(1).item())
        density = torch.exp(-(((u - cu) / length) ** 2) - ((v - cv - wave) / thick) ** 2)
        lit = _mix(haze, glow, 0.6) * (0.6 + 0.4 * torch.exp(-dist / 1.2))
        img = _mix(img, lit, 0.55 * density)

    # Mountain ridges, far (hazy) to near (dark), with mist pooling in each valley.
    layers = 4 + int(byte[15] * 2)
    for k in range(layers):
        depth = k / (layers - 1)
        base = horizon + 0.05 + 0.95 * depth**1.3
        amp = 0.08 + 0.22 * depth
        freq = 1.2 + 1.5 * rand(1).item()
        ridge = torch.zeros(w)
        for octave in range(5):
            phase = 6.283 * rand(1).item()
            f = freq * 2.1**octave
            ridge += (0.55**octave) * torch.sin(u[0] * f + phase)
        ridge = base - amp * (0.6 + ridge * 0.5)
        colour = _mix(_mix(haze, glow, 0.25), shadow, depth**0.8)
        below = (v - ridge) / 0.6
        mist = _mix(haze, glow, 0.3)
        body = _mix(colour, mist, (0.45 - 0.35 * depth) * _smooth(0.0, 1.0, below))
        rim = glow * 0.25 * (1 - depth) * torch.exp(-((v - ridge) / 0.025).clamp(min=0))
        mask = _smooth(-px, px, v - ridge)
        img = _mix(img, body + rim, mask)
    return img.clamp(0, 1)


_COLOUR_WORDS = {
    0.0: ("red", "crimson", "scarlet", "ruby", "fire", "lava"),
    0.06: ("amber", "orange", "sunset", "copper", "autumn", "rust", "dusk"),
    0.12: ("gold", "golden", "yellow", "desert", "sand", "dune", "honey"),
    0.3: ("green", "forest", "jungle", "emerald", "moss", "meadow"),
    0.48: ("teal", "cyan", "turquoise", "lagoon", "aurora", "ice", "glacier"),
    0.6: ("blue", "ocean", "sea", "night", "moon", "sapphire", "winter"),
    0.75: ("violet", "purple", "lavender", "nebula", "twilight", "dream"),
    0.9: ("pink", "rose", "magenta", "blossom", "sakura", "candy"),
}


def _prompt_hue(prompt: str, fallback: float) -> float:
    """The hue of the first colour word in the prompt ("amber", "violet"...), else from its hash."""
    for word in prompt.lower().replace(",", " ").split():
        for hue, words in _COLOUR_WORDS.items():
            if word.strip(".!?;:") in words:
                return hue + 0.04 * (fallback - 0.5)
    return fallback


def _rows(centre: float, radius: float, half: float, count: int) -> tuple[int, int]:
    """Index range of canvas rows (or columns) within ``radius`` of ``centre``."""
    lo = math.floor((centre - radius + half) / (2 * half) * count)
    hi = math.ceil((centre + radius + half) / (2 * half) * count)
    return max(0, lo), min(count, hi)


def _vignette(height: int, width: int) -> torch.Tensor:
    """A gentle darkening towards the frame's corners, applied in frame space."""
    y = torch.linspace(-1, 1, height)[:, None]
    x = torch.linspace(-1, 1, width)[None, :]
    return (1 - 0.28 * (x**2 + y**2) ** 1.3).clamp(0, 1)[None]


def encode_mp4(
    frames: Iterator[torch.Tensor], path: Path, fps: int, width: int, height: int
) -> torch.Tensor:
    """Write ``frames`` ((H, W, 3) uint8) as a browser-playable H.264 mp4; return the first frame.

    yuv420p and ``+faststart`` (index at the front) are what browsers need to play
    the file while it downloads. Frames are encoded as they arrive, so a long
    single-process render never holds the whole video in memory.
    """
    import av

    first: torch.Tensor | None = None
    with av.open(str(path), mode="w", container_options={"movflags": "+faststart"}) as container:
        stream = container.add_stream(
            "libx264", rate=fps, options={"crf": "18", "preset": "medium"}
        )
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, fps)
        for i, frame in enumerate(frames):
            array = frame.cpu().contiguous()
            if first is None:
                first = array
            vf = av.VideoFrame.from_ndarray(array.numpy(), format="rgb24")
            vf.pts = i
            container.mux(stream.encode(vf))
        container.mux(stream.encode(None))
    if first is None:
        raise ValueError("no frames to encode")
    return first


def _save_png(frame: torch.Tensor, path: Path) -> None:
    from PIL import Image

    Image.fromarray(frame.numpy()).save(path)
