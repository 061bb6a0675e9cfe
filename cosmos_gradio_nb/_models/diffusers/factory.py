"""The picklable factory :func:`cosmos_gradio_nb.diffusers.pipeline_factory` returns.

It is built in the caller's process (a notebook, ``serve``) and checked there
without torch or diffusers; it is called once in each worker, where it loads the
pipeline (``from_pretrained`` of a folder under ``CHECKPOINT_DIR``, of any folder,
or of a hub id; or the user's ``build()``), applies the dtype, moves it to the
rank's device or turns on CPU offload, optionally compiles its denoiser, and
returns a :class:`~.model.DiffusersModel`, which honours the model contract.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .options import FactoryOptions, dtype_name

__all__ = ["PipelineFactory", "resolve_source"]


def resolve_source(model: str, checkpoint_dir: str | os.PathLike[str] | None = None) -> str:
    """Where ``from_pretrained`` should look: ``CHECKPOINT_DIR/model`` first, then the path, then the hub.

    A relative ``model`` that is a folder under ``CHECKPOINT_DIR`` (the worker's
    setting) wins; an existing folder is taken as is; anything else is a hub id,
    unless it is written as a path (``./x``, ``/x``, ``~/x``), which must exist.
    """
    path = Path(model).expanduser()
    base = Path(checkpoint_dir or os.environ.get("CHECKPOINT_DIR") or "checkpoints")
    if not path.is_absolute() and (base / path).is_dir():
        return str((base / path).resolve())
    if path.is_dir():
        return str(path.resolve())
    if model.startswith((".", "/", "~")) or model.count("/") > 1:  # a path, not "org/name"
        raise FileNotFoundError(
            f"model {model!r} is neither a folder under CHECKPOINT_DIR ({base.resolve()}) nor an "
            "existing folder; give a folder with a model_index.json, or a hub id such as "
            "'nvidia/Cosmos-Predict2-2B-Video2World'"
        )
    return model


class PipelineFactory:
    """A factory for ``NotebookApp(factory=...)``: called once per worker, it returns the model.

    Made by :func:`cosmos_gradio_nb.diffusers.pipeline_factory`; plain data (the model
    id or the ``build`` function, the pipeline class, options), so it pickles and
    travels to the workers like any factory.
    """

    def __init__(
        self,
        model: str | None,
        build: Callable[[], Any] | None,
        pipeline_class: type | None,
        torch_dtype: Any,
        options: FactoryOptions,
        from_pretrained_kwargs: Mapping[str, Any],
    ) -> None:
        if (model is None) == (build is None):
            raise TypeError(
                "pipeline_factory needs a model (a hub id or a folder) or build=, not "
                + ("both" if model is not None else "neither")
            )
        if build is not None and not callable(build):
            raise TypeError(f"build must be a function returning a pipeline, got {build!r}")
        if build is not None and from_pretrained_kwargs:
            names = ", ".join(sorted(from_pretrained_kwargs))
            raise TypeError(f"from_pretrained arguments ({names}) need a model, not build=")
        if model is not None and not isinstance(model, (str, os.PathLike)):
            raise TypeError(f"model must be a hub id or a folder, got {type(model).__name__}")
        if pipeline_class is not None and not isinstance(pipeline_class, type):
            raise TypeError(f"pipeline_class must be a class, got {pipeline_class!r}")
        if options.cpu_offload not in (None, "model", "sequential"):
            raise ValueError(
                f"cpu_offload={options.cpu_offload!r}: use 'model', 'sequential' or None"
            )
        if isinstance(torch_dtype, Mapping):
            if build is not None:
                raise TypeError("a torch_dtype per component needs a model, not build=")
            for value in torch_dtype.values():
                dtype_name(value)
        elif torch_dtype is not None:
            dtype_name(torch_dtype)  # refuse a misspelt dtype here, not in every worker
        self.model = None if model is None else os.fspath(model)
        self.build = build
        self.pipeline_class = pipeline_class
        self.torch_dtype = torch_dtype
        self.options = options
        self.from_pretrained_kwargs = dict(from_pretrained_kwargs)
        # The app's label for this factory ("module:function"), shown in the page's header.
        what = repr(self.model) if build is None else f"build={_name_of(build)}"
        self.__module__ = "cosmos_gradio_nb.diffusers"
        self.__qualname__ = f"pipeline_factory({what})"

    def __repr__(self) -> str:
        return f"<{self.__qualname__}>"

    def __call__(self) -> Any:
        """In the worker: load, place and wrap the pipeline; the model object the engine serves."""
        from .placement import place

        ranks = int(os.environ.get("WORLD_SIZE", "1"))
        if ranks > 1:  # every rank would run the whole pipeline and write the same files
            raise RuntimeError(
                f"a diffusers pipeline runs on one GPU per worker, but this group has {ranks} "
                "ranks: use gpus_per_model=1 (num_gpus replicas)"
            )
        started = time.monotonic()
        pipe = self.load()
        device = place(pipe, self.options)
        seconds = time.monotonic() - started
        from .model import DiffusersModel

        print(f"diffusers: {type(pipe).__name__} loaded on {device} in {seconds:.1f} s", flush=True)
        return DiffusersModel(pipe, device=device, load_seconds=seconds, options=self.options)

    def load(self) -> Any:
        """The pipeline, from ``build()`` or ``from_pretrained``, in the requested dtype."""
        from .placement import torch_dtype

        dtype = torch_dtype(self.torch_dtype)
        if self.build is not None:
            pipe = self.build()
            if not callable(pipe) or not hasattr(pipe, "components"):
                raise TypeError(f"build() returned {type(pipe).__name__}, not a diffusers pipeline")
            if dtype is not None:
                pipe.to(dtype=dtype)
            return pipe
        import diffusers

        cls: Any = self.pipeline_class or diffusers.DiffusionPipeline
        assert self.model is not None
        source = resolve_source(self.model)
        kwargs = dict(self.from_pretrained_kwargs)
        if dtype is not None:
            kwargs["dtype"] = dtype  # diffusers 0.42 renamed from_pretrained's torch_dtype
        return cls.from_pretrained(source, **kwargs)


def _name_of(fn: Callable[..., Any]) -> str:
    module = getattr(fn, "__module__", None) or "?"
    return f"{module}.{getattr(fn, '__qualname__', type(fn).__name__)}"
