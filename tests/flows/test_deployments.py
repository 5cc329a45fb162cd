"""prefect.yaml and docker-compose.yml describe what the code provides."""

import importlib
import inspect
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_prefect_yaml_deployments_point_at_flows_and_their_parameters() -> None:
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    names = set()
    for deployment in spec["deployments"]:
        path, attribute = deployment["entrypoint"].split(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        flow = getattr(module, attribute)
        parameters = inspect.signature(flow.fn).parameters
        assert set(deployment["parameters"]) <= set(parameters), deployment["name"]
        assert deployment["work_pool"]["name"] == "hardmine-gpu"
        names.add(flow.name)
    assert names == {"mining-round", "bootstrap"}


def test_compose_worker_reserves_a_gpu_and_services_share_one_store() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "prefect-server", "worker", "dashboard"} <= set(services)
    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    stores = {services[name]["environment"]["HARDMINE_DB"] for name in ("worker", "dashboard")}
    assert len(stores) == 1 and "@postgres:5432/" in stores.pop()
