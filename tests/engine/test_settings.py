"""DeploymentEnv, validation, exceptions and the public namespace."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pydantic
import pytest

import cosmos_gradio_nb as cg
from cosmos_gradio_nb._core.validation import check_json, make_validator


def test_public_names_are_pinned() -> None:
    assert cg.__all__ == [
        "AppClosedError",
        "CosmosGradioError",
        "DeploymentEnv",
        "GradioApp",
        "InferenceError",
        "InferenceFuture",
        "InferenceResult",
        "InferenceTimeoutError",
        "NotebookApp",
        "QueueFullError",
        "RequestRefusedError",
        "StopRequested",
        "ValidationError",
        "WorkerCrashedError",
        "WorkerError",
        "WorkerInfo",
        "WorkerStartupError",
        "check_asset_path",
        "compare",
        "connect",
        "create_gradio_UI",
        "create_widget_UI",
        "load_results",
        "report_progress",
        "stop_requested",
    ]
    for name in cg.__all__:
        assert getattr(cg, name) is not None


def test_public_names_are_the_packages_own() -> None:
    """Reprs, tracebacks and pickles name ``cosmos_gradio_nb``, never a private module."""
    for name in cg.__all__:
        assert getattr(cg, name).__module__ == "cosmos_gradio_nb", name
    assert repr(cg.WorkerCrashedError) == "<class 'cosmos_gradio_nb.WorkerCrashedError'>"
    result = cg.InferenceResult("ab12", Path("/tmp"), status={"state": "succeeded"})
    data = pickle.dumps(result)
    assert b"cosmos_gradio_nb._" not in data and pickle.loads(data) == result
    error = cg.ValidationError("bad", key="seed")
    data = pickle.dumps(error)
    assert b"cosmos_gradio_nb._" not in data and pickle.loads(data).key == "seed"


def test_import_is_light() -> None:
    code = (
        "import sys, cosmos_gradio_nb; "
        "heavy = [m for m in ('gradio', 'torch', 'ipywidgets', 'pydantic') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_env_defaults_and_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("NUM_GPUS", "GPUS_PER_MODEL", "OUTPUT_DIR", "WORKER_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)
    env = cg.DeploymentEnv()
    assert env.num_gpus == 1 and env.group_size == 1 and env.num_groups == 1
    assert env.worker_timeout == 3600
    monkeypatch.setenv("NUM_GPUS", "4")
    monkeypatch.setenv("OUTPUT_DIR", "/data/out")
    env = cg.DeploymentEnv()
    assert env.num_gpus == 4 and env.group_size == 4 and env.num_groups == 1  # seed: one model
    assert env.output_dir == Path("/data/out")
    env = cg.DeploymentEnv(gpus_per_model=1)
    assert env.num_groups == 4


@pytest.mark.parametrize(
    ("variables", "fragment"),
    [
        ({"NUM_GPUS": "0"}, "NUM_GPUS"),
        ({"NUM_GPUS": "two"}, "NUM_GPUS"),
        ({"NUM_GPUS": "4", "GPUS_PER_MODEL": "3"}, "not a multiple of GPUS_PER_MODEL"),
        ({"WORKER_TIMEOUT": "-1"}, "WORKER_TIMEOUT"),
    ],
)
def test_env_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], fragment: str
) -> None:
    for key, value in variables.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(cg.ValidationError, match=fragment):
        cg.DeploymentEnv()


def test_exception_tree_and_pickling() -> None:
    errors = [
        cg.ValidationError("bad", key="seed"),
        cg.InferenceError("x", request_id="r", rank=1, remote_traceback="tb"),
        cg.WorkerCrashedError(
            "died", rank=0, exitcode=-9, signal_name="SIGKILL", last_log_lines=["a"]
        ),
        cg.InferenceTimeoutError("slow", timeout=1.0),
        cg.WorkerStartupError("nope", remote_traceback="tb"),
        cg.QueueFullError("full"),
        cg.AppClosedError("closed"),
    ]
    for err in errors:
        assert isinstance(err, cg.CosmosGradioError)
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err) and str(back) == str(err) and back.__dict__ == err.__dict__
    assert isinstance(errors[0], ValueError) and isinstance(errors[3], TimeoutError)


def test_callable_and_pydantic_validators() -> None:
    def check(params: dict) -> dict:
        if params.get("seed", 0) < 0:
            raise ValueError("seed must be >= 0")
        return {**params, "checked": True}

    validate = make_validator(check)
    assert validate({"seed": 1}) == {"seed": 1, "checked": True}
    with pytest.raises(cg.ValidationError, match="seed must be >= 0"):
        validate({"seed": -1})

    class Params(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid")
        prompt: str
        steps: int = pydantic.Field(10, ge=1)

    validate = make_validator(Params)
    assert validate({"prompt": "cat"}) == {"prompt": "cat", "steps": 10}
    with pytest.raises(cg.ValidationError, match="steps") as info:
        validate({"prompt": "cat", "steps": 0})
    assert info.value.key == "steps"
    with pytest.raises(cg.ValidationError, match="stepz"):
        validate({"prompt": "cat", "stepz": 3})


def test_non_json_params_name_the_key() -> None:
    with pytest.raises(cg.ValidationError, match=r"'motion.path\[1\]' is not JSON") as info:
        check_json({"motion": {"path": [1, object()]}})
    assert info.value.key == "motion.path[1]"
    with pytest.raises(cg.ValidationError, match="'scale'"):
        check_json({"scale": float("nan")})


def test_check_asset_path(tmp_path: Path) -> None:
    allowed = tmp_path / "uploads"
    allowed.mkdir()
    inside = allowed / "a.png"
    inside.write_bytes(b"x")
    assert cg.check_asset_path(str(inside), [allowed]) == inside.resolve()
    with pytest.raises(ValueError, match="outside the allowed folders"):
        cg.check_asset_path(str(allowed / ".." / "secret.txt"), [allowed])
    with pytest.raises(ValueError, match="outside the allowed folders"):
        cg.check_asset_path("/etc/passwd", [allowed])
    with pytest.raises(ValueError, match="does not exist"):
        cg.check_asset_path(str(allowed / "missing.png"), [allowed])
    link = allowed / "link.png"
    link.symlink_to("/etc/hostname")
    with pytest.raises(ValueError, match="outside"):
        cg.check_asset_path(str(link), [allowed])


def test_validators_see_the_apps_own_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cosmos_gradio_nb._core.validation import app_asset_dirs

    monkeypatch.setenv("UPLOADS_DIR", str(tmp_path / "env-uploads"))
    mine = tmp_path / "my-uploads"
    mine.mkdir()
    (mine / "cat.png").write_bytes(b"x")
    with pytest.raises(ValueError, match="outside"):
        cg.check_asset_path(mine / "cat.png")
    with app_asset_dirs([mine, tmp_path / "out"]):
        assert cg.check_asset_path(mine / "cat.png") == (mine / "cat.png").resolve()
    with pytest.raises(ValueError, match="outside"):
        cg.check_asset_path(mine / "cat.png")


def test_every_app_setting_is_a_real_keyword_of_both_apps() -> None:
    import inspect

    from cosmos_gradio_nb._core.settings import app_settings

    for cls in (cg.NotebookApp, cg.GradioApp):
        params = inspect.signature(cls).parameters
        assert "kwargs" not in params
        assert [p for p in params if p in app_settings()] == app_settings()
        assert {"validator", "factory_module", "factory_function", "factory", "name"} <= set(params)
    for cls in (cg.NotebookApp, cg.GradioApp):  # documented on the public class itself
        doc = cls.__doc__ or ""
        assert "_BaseApp" not in doc
        assert all(f"\n    {name}:\n" in doc for name in app_settings()), doc
    with pytest.raises(
        TypeError,
        match=r"^NotebookApp\(\) got an unexpected keyword argument "
        r"'num_gpu'; did you mean 'num_gpus'\?$",
    ):
        cg.NotebookApp(factory="m:f", num_gpu=1)


def test_every_setting_is_documented_in_the_readme_and_reaches_the_worker() -> None:
    from cosmos_gradio_nb._core.settings import DeploymentEnv, env_var

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    env = DeploymentEnv(ray_address="auto", gpus_per_model=1, shared_output_dir=False)
    worker = env.worker_environment()
    for name in DeploymentEnv.model_fields:
        assert f"| `{env_var(name)}` |" in readme, f"README's settings table lacks {env_var(name)}"
        if name != "auth" and getattr(env, name) not in (None, []):
            assert env_var(name) in worker
    assert "COSMOS_GRADIO_AUTH" not in DeploymentEnv(auth="u:p").worker_environment()


def test_the_engine_gets_the_settings_it_uses_as_plain_values(make_app) -> None:
    from cosmos_gradio_nb._core.settings import env_var

    app = make_app(
        model_name="m1",
        startup_timeout=123.0,
        log_max_mb=2,
        log_backups=1,
        max_queue_size=7,
        worker_env={"EXTRA": "x", env_var("model_name"): "from worker_env"},
    )
    config = app._pool.config
    assert (config.num_groups, config.group_size, config.model_name) == (1, 1, "m1")
    assert (config.startup_timeout, config.log_max_bytes, config.log_backups) == (123.0, 2**21, 1)
    assert config.log_file == app.env.log_file and config.max_queue_size == 7
    assert config.worker_env[env_var("startup_timeout")] == "123.0"
    assert config.worker_env["EXTRA"] == "x"
    assert config.worker_env[env_var("model_name")] == "from worker_env"  # the user's wins


def test_every_app_setting_is_a_serve_option() -> None:
    from cosmos_gradio_nb._cli import build_parser
    from cosmos_gradio_nb._core.settings import app_settings

    args = build_parser().parse_args(["serve", "--num-gpus", "4", "--backend", "ray"])
    assert args.num_gpus == 4 and args.backend == "ray"
    for name in app_settings():
        assert hasattr(args, name)


def test_a_keyword_typo_raises_before_the_running_app_is_replaced(deploy_dirs) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    app = cg.NotebookApp(factory_module="models", name="typo-test")
    try:
        with pytest.raises(TypeError, match="num_gpu"):
            cg.NotebookApp(factory_module="models", name="typo-test", num_gpu=1)  # type: ignore[call-arg]
        with pytest.raises(cg.ValidationError, match="NUM_GPUS"):
            cg.NotebookApp(factory_module="models", name="typo-test", num_gpus=0)
        assert not app.closed
        assert app.infer({"op": "echo", "value": 5}).result(30).status["echo"] == 5
    finally:
        app.close()


def test_asset_dirs_and_flags_parse_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSET_DIRS", os.pathsep.join(["/data/a", "/data/b"]))
    monkeypatch.setenv("SHARED_OUTPUT_DIR", "0")
    monkeypatch.setenv("COSMOS_GRADIO_PROXY", "1")
    env = cg.DeploymentEnv()
    assert env.asset_dirs == [Path("/data/a"), Path("/data/b")]
    assert env.shared_output_dir is False and env.proxy is True
    monkeypatch.setenv("BACKEND", "slurm")
    with pytest.raises(cg.ValidationError, match="BACKEND"):
        cg.DeploymentEnv()
    monkeypatch.delenv("BACKEND")
    monkeypatch.setenv("COSMOS_GRADIO_AUTH", "no-colon")
    with pytest.raises(cg.ValidationError, match="COSMOS_GRADIO_AUTH") as info:
        cg.DeploymentEnv()
    assert "no-colon" not in str(info.value)  # a password is never echoed


def test_a_validators_own_message_is_bounded() -> None:
    def echoes(params: dict) -> dict:
        raise ValueError("bad request: " + "x" * 1_000_000)

    with pytest.raises(cg.ValidationError) as info:
        make_validator(echoes)({"a": 1})
    text = str(info.value)
    assert len(text) < 5000 and text.startswith("bad request: ") and "more characters" in text
