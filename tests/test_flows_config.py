"""prefect.yaml, the pool templates, the images and the GCP set-up script, checked by parsing them.

No Docker engine or GCP is reachable here, so these checks are what stands between a typo and a
failed deploy: every entrypoint imports and is a flow, every template placeholder is defined,
the GPU template asks for a GPU, the shell script parses.
"""

from __future__ import annotations

import importlib
import json
import re
import subprocess
from pathlib import Path

import yaml
from prefect import Flow

ROOT = Path(__file__).resolve().parent.parent


def _prefect_yaml() -> dict:
    return yaml.safe_load((ROOT / "prefect.yaml").read_text())


def _deployments() -> dict[str, dict]:
    return {d["name"]: d for d in _prefect_yaml()["deployments"]}


def test_every_deployment_entrypoint_imports_a_flow() -> None:
    deployments = _deployments()
    assert set(deployments) == {"personalize-recipient", "campaign", "wav2lip"}
    for name, spec in deployments.items():
        path, func = spec["entrypoint"].split(":")
        assert (ROOT / path).is_file(), path
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        obj = getattr(module, func)
        assert isinstance(obj, Flow), f"{name}: {spec['entrypoint']} is not a flow"
        # run_deployment addresses children as "<flow name>/<deployment name>"
        assert f"{obj.name}/{name}" in {"personalize-recipient/personalize-recipient", "campaign/campaign", "wav2lip/wav2lip"}


def test_pools_schedule_and_parameters() -> None:
    deployments = _deployments()
    assert deployments["personalize-recipient"]["work_pool"]["name"] == "cpu"
    assert deployments["campaign"]["work_pool"]["name"] == "cpu"
    assert "gpu" in deployments["wav2lip"]["work_pool"]["name"]
    schedules = deployments["campaign"]["schedules"]
    assert schedules and schedules[0]["active"] is False
    assert len(schedules[0]["cron"].split()) == 5
    # parameters given in the YAML must exist on the flow (a typo would only fail at run time)
    from prefect.utilities.callables import parameter_schema

    from flows.campaign import campaign

    props = parameter_schema(campaign.fn).model_dump()["properties"]
    for key in list(deployments["campaign"].get("parameters", {})) + list(schedules[0]["parameters"]):
        assert key in props, key


def test_recipient_parameters_are_typed_for_the_ui_form() -> None:
    from prefect.utilities.callables import parameter_schema

    from flows.recipient import personalize_recipient

    schema = parameter_schema(personalize_recipient.fn).model_dump()
    assert schema["required"] == ["template", "data"]
    assert schema["properties"]["template"]["type"] == "string"
    assert schema["properties"]["data"]["additionalProperties"] == {"type": "string"}


def _placeholders(obj: object) -> set[str]:
    text = json.dumps(obj)
    return set(re.findall(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}", text))


def _check_pool_template(path: Path) -> dict:
    template = json.loads(path.read_text())
    assert set(template) == {"job_configuration", "variables"}
    variables = template["variables"]
    assert variables["type"] == "object"
    defined = set(variables["properties"])
    used = _placeholders(template["job_configuration"])
    assert used <= defined, f"{path.name}: undefined placeholders {used - defined}"
    for name, prop in variables["properties"].items():
        if "default" in prop and prop.get("type") in ("string", "integer", "boolean", "object"):
            py = {"string": str, "integer": int, "boolean": bool, "object": dict}[prop["type"]]
            assert isinstance(prop["default"], py), f"{path.name}: default of {name} is not {prop['type']}"
    return template


def test_cloud_run_cpu_pool_template() -> None:
    template = _check_pool_template(ROOT / "deployments" / "cloud-run-v2-cpu.json")
    env = template["variables"]["properties"]["env"]["default"]
    assert env["PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK"].startswith("gcs-bucket/")
    assert env["LOOM_GPU_POOL"] == "gpu"
    assert "loom-cpu" in template["variables"]["properties"]["image"]["default"]


def test_cloud_run_gpu_pool_template_asks_for_a_gpu() -> None:
    template = _check_pool_template(ROOT / "deployments" / "cloud-run-v2-gpu.json")
    inner = template["job_configuration"]["job_body"]["template"]["template"]
    assert inner["nodeSelector"]["accelerator"] == "{{ gpu_type }}"
    assert inner["gpuZonalRedundancyDisabled"] is True
    limits = inner["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "{{ gpu_count }}"
    props = template["variables"]["properties"]
    assert props["gpu_type"]["default"] == "nvidia-l4"
    # Google: an L4 needs at least 4 CPU and 16 GiB
    assert int(props["cpu"]["default"]) >= 4 and int(props["memory"]["default"].removesuffix("Gi")) >= 16
    assert "loom-gpu" in props["image"]["default"]


def test_vertex_gpu_pool_template() -> None:
    template = _check_pool_template(ROOT / "deployments" / "vertex-ai-gpu.json")
    props = template["variables"]["properties"]
    assert props["accelerator_type"]["default"] == "NVIDIA_L4" and props["accelerator_count"]["default"] == 1


def test_cloud_run_pool_templates_render_into_worker_configurations() -> None:
    """Defaults filled in as the worker does, then validated by prefect-gcp's own job model."""
    from unittest import mock

    import google.auth.credentials
    from prefect.utilities.templating import apply_values
    from prefect_gcp.credentials import GcpCredentials
    from prefect_gcp.workers.cloud_run_v2 import CloudRunWorkerJobV2Configuration

    for name in ("cloud-run-v2-cpu.json", "cloud-run-v2-gpu.json"):
        template = json.loads((ROOT / "deployments" / name).read_text())
        defaults = {k: v["default"] for k, v in template["variables"]["properties"].items() if "default" in v}
        values = apply_values(template["job_configuration"], defaults)
        # No Google credentials here: anonymous ones stand in for the service account.
        with mock.patch.object(
            GcpCredentials, "get_credentials_from_service_account", return_value=google.auth.credentials.AnonymousCredentials()
        ):
            values["credentials"] = GcpCredentials(project="demo-proj")
            config = CloudRunWorkerJobV2Configuration(**values)
        container = config.job_body["template"]["template"]["containers"][0]
        assert config.env["LOOM_PROJECT_DIR"] == "/opt/loom"
        if "gpu" in name:
            assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
            assert config.job_body["template"]["template"]["nodeSelector"] == {"accelerator": "nvidia-l4"}
        else:
            assert "nvidia.com/gpu" not in container["resources"]["limits"]


def test_dockerfiles() -> None:
    for name, torch_index in (("Dockerfile", "/whl/cpu"), ("Dockerfile.gpu", "/whl/cu")):
        lines = [ln.strip() for ln in (ROOT / "infra" / name).read_text().splitlines()]
        instructions = [ln.split()[0] for ln in lines if ln and not ln.startswith("#") and not lines[lines.index(ln) - 1].endswith("\\")]
        assert instructions[0] == "FROM"
        text = "\n".join(lines)
        assert torch_index in text
        for folder in ("loom", "app", "flows", "tasks", "blocks"):
            assert f"COPY {folder} ./{folder}" in text
            assert (ROOT / folder).is_dir()
        assert "LOOM_PROJECT_DIR=/opt/loom" in text and "WORKDIR /opt/loom" in text
        assert "USER loom" in text
        assert "CMD [" in text


def test_cloudbuild_builds_both_images_and_deploys() -> None:
    build = yaml.safe_load((ROOT / "infra" / "cloudbuild.yaml").read_text())
    ids = {step["id"]: step for step in build["steps"]}
    assert {"cpu-image", "gpu-image", "push", "deploy"} <= set(ids)
    files = {step["args"][step["args"].index("-f") + 1] for step in build["steps"] if "-f" in step.get("args", [])}
    assert files == {"infra/Dockerfile", "infra/Dockerfile.gpu"}
    assert all((ROOT / f).is_file() for f in files)
    for step in build["steps"]:
        for dep in step.get("waitFor", []):
            assert dep == "-" or dep in ids
    used = set(re.findall(r"\$\{(_[A-Z_]+)\}", (ROOT / "infra" / "cloudbuild.yaml").read_text()))
    assert used <= set(build["substitutions"])
    assert "prefect --no-prompt deploy --all" in ids["deploy"]["args"][-1]


def test_gcp_setup_script_parses_and_dry_runs() -> None:
    script = ROOT / "infra" / "gcp-setup.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    out = subprocess.run(
        ["bash", str(script), "--dry-run", "--gpu-backend", "vertex"],
        env={"PROJECT": "demo-proj", "BUCKET": "demo-bucket", "PATH": "/usr/bin:/bin", "LOOM_TTS_CONCURRENCY": "5"},
        capture_output=True, text=True, check=True,
    ).stdout
    # the providers' global concurrency limits, sized by the settings
    assert "prefect gcl create elevenlabs --limit 5" in out
    assert "prefect gcl create synclabs --limit 3" in out and "prefect gcl create gpu-lipsync --limit 1" in out
    assert "gcloud storage buckets create gs://demo-bucket" in out
    assert "gcloud iam service-accounts create loom-runner" in out
    assert "gcloud artifacts repositories create loom" in out
    assert re.search(r"prefect work-pool create cpu --type cloud-run-v2 .*--overwrite", out)
    assert re.search(r"prefect work-pool create gpu --type vertex-ai", out)
    assert "prefect block register -m blocks" in out
    bad = subprocess.run(["bash", str(script)], env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    assert bad.returncode != 0 and "PROJECT" in bad.stderr


def test_blocks_module_exposes_block_classes_for_register() -> None:
    import inspect

    from prefect.blocks.core import Block

    blocks = importlib.import_module("blocks")
    names = {name for name, cls in inspect.getmembers(blocks) if inspect.isclass(cls) and Block.is_block_class(cls)}
    assert {"LoomStorage", "ElevenLabsCredentials", "Wav2LipModel", "SyncLabsCredentials"} <= names
