"""docker-compose.yml cannot run here (no Docker engine); check what can be checked."""

from __future__ import annotations

from pathlib import Path

import yaml

from bridge.nodes.opensearch import DEFAULT_VERSION

COMPOSE = Path(__file__).resolve().parents[1] / "docker-compose.yml"


def test_compose_parses_and_pins_the_embedded_version():
    spec = yaml.safe_load(COMPOSE.read_text())
    services = spec["services"]
    assert services["opensearch"]["image"] == f"opensearchproject/opensearch:{DEFAULT_VERSION}"
    assert (
        services["dashboards"]["image"]
        == f"opensearchproject/opensearch-dashboards:{DEFAULT_VERSION}"
    )
    for service in services.values():
        assert "healthcheck" in service
        for port in service["ports"]:
            assert port.startswith("127.0.0.1:"), f"{port} is not loopback-only"
    volume = services["opensearch"]["volumes"][0].split(":")[0]
    assert volume in spec["volumes"]
    assert services["dashboards"]["depends_on"]["opensearch"]["condition"] == "service_healthy"


def test_dashboards_talk_to_the_gateway_and_the_gateway_to_opensearch():
    spec = yaml.safe_load(COMPOSE.read_text())
    services = spec["services"]
    gateway = services["dotbridge"]
    command = gateway["command"]
    assert command[0] == "serve"
    port = next(arg.split("=", 1)[1] for arg in command if arg.startswith("--port="))
    assert "--url=http://opensearch:9200" in command
    assert gateway["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert gateway["depends_on"]["opensearch"]["condition"] == "service_healthy"
    dashboards = services["dashboards"]
    assert dashboards["environment"]["OPENSEARCH_HOSTS"] == f'["http://dotbridge:{port}"]'
    assert dashboards["depends_on"]["dotbridge"]["condition"] == "service_healthy"
    dockerfile = (COMPOSE.parent / gateway["build"] / "Dockerfile").read_text()
    assert "'.[serve]'" in dockerfile and "USER dotbridge" in dockerfile
