"""The secured OpenSearch node: TLS with a private CA, generated users, a read-only role."""

from __future__ import annotations

import stat

import pytest
import requests
from click.testing import CliRunner
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from bridge.cli import main
from bridge.nodes import LocalNode
from bridge.nodes import security as sec

pytestmark = pytest.mark.integration


def _get(node: LocalNode, path: str, user: str | None = "admin", **kwargs):
    auth = (user, node.credentials.password(user)) if user else None
    return requests.get(
        f"{node.url}{path}", verify=str(node.credentials.ca), auth=auth, timeout=30, **kwargs
    )


def test_security_plugin_lives_in_its_own_home(secure_node, os_client):
    descriptor = secure_node.home / "plugins" / sec.SECURITY_PLUGIN / "plugin-descriptor.properties"
    assert "opensearch.version=3.5.0\n" in descriptor.read_text()
    plugins = {p["component"] for p in _get(secure_node, "/_cat/plugins?format=json").json()}
    assert plugins == {"opensearch-knn", "opensearch-security"}
    # The plain node is untouched: no security plugin, no TLS.
    plain = {p["component"] for p in os_client.cat.plugins(format="json")}
    assert "opensearch-security" not in plain
    assert not (secure_node.with_security(False).home / "plugins" / sec.SECURITY_PLUGIN).exists()


def test_only_generated_users_and_secrets_are_private(secure_node):
    creds = secure_node.credentials
    for path in creds.folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(creds.folder.stat().st_mode) == 0o700
    users = creds.internal_users.read_text()
    assert users.count('hash: "$2b$') == 2
    assert "kibanaserver" not in users and "Demo" not in users
    listed = _get(secure_node, "/_plugins/_security/api/internalusers").json()
    assert set(listed) == {"admin", "reader"}
    # No anonymous access, and the demo password does not open the door.
    assert _get(secure_node, "/", user=None).status_code == 401
    demo = requests.get(secure_node.url, verify=str(creds.ca), auth=("admin", "admin"), timeout=30)
    assert demo.status_code == 401


def test_certificates_serve_rest_and_transport(secure_node):
    creds = secure_node.credentials
    node_cert = x509.load_pem_x509_certificate(creds.node_cert.read_bytes())
    san = node_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    usages = node_cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= set(usages)
    # The admin certificate is the admin_dn: it alone may read the TLS setup of the node.
    resp = requests.get(
        f"{secure_node.url}/_plugins/_security/api/ssl/certs",
        verify=str(creds.ca),
        cert=(str(creds.admin_cert), str(creds.admin_key)),
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    for layer in ("http_certificates_list", "transport_certificates_list"):
        assert [c["subject_dn"] for c in body[layer]] == [sec.node_dn()]
        assert [c["issuer_dn"] for c in body[layer]] == ["CN=dotbridge local CA,O=dotbridge"]
    # Plain http to the TLS port gets no answer.
    with pytest.raises(requests.ConnectionError):
        requests.get(secure_node.url.replace("https", "http"), timeout=10)


def test_reader_searches_and_may_not_write(secure_node, secure_index):
    admin = ("admin", secure_node.credentials.password("admin"))
    base = {"verify": str(secure_node.credentials.ca), "timeout": 30}
    url = f"{secure_node.url}/{secure_index}"
    assert requests.put(url, json={}, auth=admin, **base).status_code == 200
    doc = requests.put(f"{url}/_doc/1?refresh=true", json={"t": "x"}, auth=admin, **base)
    assert doc.status_code == 201
    reader = ("reader", secure_node.credentials.password("reader"))
    assert requests.get(f"{url}/_search", auth=reader, **base).json()["hits"]["total"]["value"] == 1
    assert requests.get(f"{url}/_mapping", auth=reader, **base).status_code == 200
    assert requests.get(f"{url}/_settings", auth=reader, **base).status_code == 200
    assert requests.get(f"{secure_node.url}/_cluster/health", auth=reader, **base).ok
    write = requests.put(f"{url}/_doc/2", json={"t": "y"}, auth=reader, **base)
    assert write.status_code == 403
    create = requests.put(f"{url}-other", json={}, auth=reader, **base)
    assert create.status_code == 403
    assert requests.get(f"{url}/_count", auth=reader, **base).json()["count"] == 1


def test_start_prints_where_the_secrets_are_never_them(secure_node):
    # The node runs: `start` finds it healthy and only reports.
    result = CliRunner().invoke(
        main, ["opensearch", "start", "--secure", "--port", str(secure_node.port)]
    )
    assert result.exit_code == 0, result.output
    creds = secure_node.credentials
    assert str(creds.ca) in result.output
    assert str(creds.password_file("admin")) in result.output
    for user in ("admin", "reader"):
        assert creds.password(user) not in result.output
