"""``python -m cosmos_gradio_nb._worker``: the worker process's entry point (see ``loop.main``)."""

from .loop import main

raise SystemExit(main())
