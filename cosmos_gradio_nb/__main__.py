"""``python -m cosmos_gradio_nb serve ...``: the standalone server."""

from ._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
