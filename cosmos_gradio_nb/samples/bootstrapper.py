"""Seed-style bootstrapper for the sample model: workers, the default page, the server.

Run it as the seed runs its own (``python -m cosmos_gradio_nb.samples.bootstrapper``,
or ``python path/to/bootstrapper.py``); the settings come from the environment
(``NUM_GPUS``, ``GPUS_PER_MODEL``, ``OUTPUT_DIR``, ``LOG_FILE``...), read by
``DeploymentEnv``. Copy this file next to your own model and change the three
names marked below; ``cosmos-gradio-nb serve --factory ... --validator ...`` does
the same without a file.
"""

from __future__ import annotations

import os

from cosmos_gradio_nb import DeploymentEnv, GradioApp, create_gradio_UI
from cosmos_gradio_nb.samples.params import SampleParams  # your validator


def main() -> None:
    """Start the workers, build the page and serve it until Ctrl-C."""
    env = DeploymentEnv()
    app = GradioApp(
        validator=SampleParams,  # a function dict -> dict, or a pydantic model class
        factory_module="cosmos_gradio_nb.samples.video_model",  # your model's module
        factory_function="create_worker",  # its factory
        env=env,
        echo_logs=True,
    )
    try:
        interface = create_gradio_UI(
            infer_func=app.infer,
            header=f"{env.model_name}: sample video model",
            help_text="Animates a procedural scene (or an uploaded image) into a short mp4.",
        )
        interface.launch(
            server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
            server_port=int(os.environ.get("GRADIO_SERVER_PORT", "8080")),
        )  # blocks until Ctrl-C
    finally:
        app.close()


if __name__ == "__main__":
    main()
