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
