"""What a secured OpenSearch node needs: the security plugin, a private PKI and generated users.

The security plugin on Maven Central stops at 3.4.0.0; its plugin-descriptor.properties line
`opensearch.version` is changed to 3.5.0 so that the 3.5.0 server loads it. Per node, dotbridge
generates a private CA, a node certificate for 127.0.0.1/localhost (server and client, for REST
and transport TLS), an admin client certificate (`admin_dn`), and two users with random
passwords, bcrypt-hashed: `admin` (all_access) and `reader` (search and read only). The plugin's
demo users and roles mappings are never installed. Secrets are written with mode 0600.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from bridge.nodes.maven import Artifact

SECURITY_VERSION = "3.4.0.0"
SECURITY_PLUGIN = "opensearch-security"
ADMIN_USER = "admin"
READER_USER = "reader"
READER_ROLE = "dotbridge_reader"
NODE_DN_CN = "dotbridge-node"
ADMIN_DN_CN = "dotbridge-admin"
KEY_BITS = 2048
VALID_DAYS = 825


def security_artifact() -> Artifact:
    return Artifact(
        f"org/opensearch/plugin/{SECURITY_PLUGIN}/{SECURITY_VERSION}/"
        f"{SECURITY_PLUGIN}-{SECURITY_VERSION}.zip"
    )


def adapt_plugin(home: Path, server_version: str) -> None:
    """Make the unpacked plugin loadable by `server_version` and move its config into place.

    The plugin's config goes to config/opensearch-security (as `opensearch-plugin install` would
    put it), minus the demo users, whose hashes are public: a node gets generated users only.
    """
    plugin = home / "plugins" / SECURITY_PLUGIN
    descriptor = plugin / "plugin-descriptor.properties"
    text = descriptor.read_text()
    text, count = re.subn(
        r"^opensearch\.version=.*$", f"opensearch.version={server_version}", text, flags=re.M
    )
    if count != 1:
        raise ValueError(f"{descriptor} has no single opensearch.version line")
    descriptor.write_text(text)
    target = home / "config" / SECURITY_PLUGIN
    shutil.rmtree(target, ignore_errors=True)
    shutil.move(str(plugin / "config"), target)
    for name in ("internal_users.yml", "roles_mapping.yml", "tenants.yml"):
        (target / name).unlink(missing_ok=True)
    for script in (plugin / "tools").glob("*.sh"):
        script.chmod(0o755)  # zipfile drops the exec bit


@dataclass(frozen=True)
class Credentials:
    """Where a secured node's generated secrets live (all files mode 0600)."""

    folder: Path

    @property
    def ca(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def node_cert(self) -> Path:
        return self.folder / "node.pem"

    @property
    def node_key(self) -> Path:
        return self.folder / "node-key.pem"

    @property
    def admin_cert(self) -> Path:
        return self.folder / "admin.pem"

    @property
    def admin_key(self) -> Path:
        return self.folder / "admin-key.pem"

    @property
    def internal_users(self) -> Path:
        return self.folder / "internal_users.yml"

    def password_file(self, user: str) -> Path:
        return self.folder / f"{user}.password"

    def password(self, user: str) -> str:
        return self.password_file(user).read_text().strip()

    @property
    def complete(self) -> bool:
        files = [self.ca, self.node_cert, self.node_key, self.admin_cert, self.admin_key]
        files += [self.internal_users, *(self.password_file(u) for u in (ADMIN_USER, READER_USER))]
        return all(f.exists() for f in files)

    def generate(self) -> None:
        """A fresh CA, node and admin certificates, and the two users' passwords and hashes."""
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True, mode=0o700)
        ca_key, ca_cert = _certificate("dotbridge local CA", ca=None)
        node_key, node_cert = _certificate(NODE_DN_CN, ca=(ca_key, ca_cert), server=True)
        admin_key, admin_cert = _certificate(ADMIN_DN_CN, ca=(ca_key, ca_cert), server=False)
        # The CA's key is not kept: nothing else is ever signed with it.
        _write(self.ca, _pem_cert(ca_cert))
        _write(self.node_cert, _pem_cert(node_cert))
        _write(self.node_key, _pem_key(node_key))
        _write(self.admin_cert, _pem_cert(admin_cert))
        _write(self.admin_key, _pem_key(admin_key))
        passwords = {user: secrets.token_urlsafe(24) for user in (ADMIN_USER, READER_USER)}
        for user, password in passwords.items():
            _write(self.password_file(user), password + "\n")
        _write(self.internal_users, internal_users_yml(passwords))


def node_dn() -> str:
    return _name(NODE_DN_CN).rfc4514_string()


def admin_dn() -> str:
    return _name(ADMIN_DN_CN).rfc4514_string()


def security_settings() -> dict[str, object]:
    """opensearch.yml settings of a secured node (certificate paths relative to the config)."""
    tls = {"pemcert_filepath": "node.pem", "pemkey_filepath": "node-key.pem"}
    tls["pemtrustedcas_filepath"] = "ca.pem"
    settings: dict[str, object] = {"plugins.security.ssl.http.enabled": True}
    for layer in ("transport", "http"):
        for key, value in tls.items():
            settings[f"plugins.security.ssl.{layer}.{key}"] = value
    settings.update(
        {
            "plugins.security.authcz.admin_dn": [admin_dn()],
            "plugins.security.nodes_dn": [node_dn()],
            # Loads config/opensearch-security/*.yml (our users and roles) at the first start.
            "plugins.security.allow_default_init_securityindex": True,
            "plugins.security.restapi.roles_enabled": ["all_access"],
            "plugins.security.system_indices.enabled": True,
            # No audit sink: a local node's log is enough (unset, the plugin logs an error).
            "plugins.security.audit.type": "noop",
        }
    )
    return settings


def internal_users_yml(passwords: dict[str, str]) -> str:
    """The users file: admin (all_access) and the read-only reader, bcrypt `$2b$` hashes."""
    import bcrypt

    descriptions = {
        ADMIN_USER: "dotbridge: administrator (all_access), generated password",
        READER_USER: "dotbridge: search and read only, generated password",
    }
    lines = ['_meta:\n  type: "internalusers"\n  config_version: 2']
    for user, password in passwords.items():
        digest = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=12)).decode()
        lines.append(
            f'{user}:\n  hash: "{digest}"\n  reserved: true\n  description: "{descriptions[user]}"'
        )
    return "\n".join(lines) + "\n"


# Search, read documents, read mappings and settings, analyze text, watch the cluster: what
# `dotbridge search`, `eval` and `status` need, and nothing that writes or creates an index.
ROLES_YML = f"""_meta:
  type: "roles"
  config_version: 2
{READER_ROLE}:
  reserved: true
  description: "dotbridge: search and read every index; no writes, no index creation"
  cluster_permissions:
    - "cluster_monitor"
    - "cluster_composite_ops_ro"
  index_permissions:
    - index_patterns: ["*"]
      allowed_actions:
        - "read"
        - "indices:admin/get"
        - "indices:admin/mappings/get"
        - "indices:monitor/settings/get"
        - "indices:admin/analyze"
"""

ROLES_MAPPING_YML = f"""_meta:
  type: "rolesmapping"
  config_version: 2
all_access:
  reserved: true
  users: ["{ADMIN_USER}"]
  description: "dotbridge: the generated admin user"
{READER_ROLE}:
  reserved: true
  users: ["{READER_USER}"]
  description: "dotbridge: the generated read-only user"
"""

TENANTS_YML = '_meta:\n  type: "tenants"\n  config_version: 2\n'


def write_security_config(config: Path, credentials: Credentials) -> None:
    """Put certificates and the users, roles and mappings into an instance's config."""
    for source in (credentials.ca, credentials.node_cert, credentials.node_key):
        target = config / source.name
        shutil.copyfile(source, target)
        target.chmod(0o600)
    folder = config / SECURITY_PLUGIN
    shutil.copyfile(credentials.internal_users, folder / "internal_users.yml")
    (folder / "internal_users.yml").chmod(0o600)
    (folder / "roles.yml").write_text(ROLES_YML)
    (folder / "roles_mapping.yml").write_text(ROLES_MAPPING_YML)
    (folder / "tenants.yml").write_text(TENANTS_YML)
    # The plugin warns about every config file that others could read, and it holds secrets.
    for path in [config, *config.rglob("*")]:
        path.chmod(0o700 if path.is_dir() else 0o600)


# ---- certificates -----------------------------------------------------------------------------


def _name(common_name: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dotbridge"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _certificate(common_name: str, *, ca, server: bool = False):
    """A new RSA key and its certificate: self-signed CA when `ca` is None, else signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = _name(common_name)
    issuer_key, issuer = (key, subject) if ca is None else (ca[0], ca[1].subject)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    if ca is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            True,
        )
    else:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca[0].public_key()), False
        )
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            True,
        )
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
        if server:
            usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    ]
                ),
                False,
            )
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), False)
    return key, builder.sign(issuer_key, hashes.SHA256())


def _pem_cert(cert) -> str:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _pem_key(key) -> str:
    from cryptography.hazmat.primitives import serialization

    # PKCS#8: the format the security plugin reads.
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _write(path: Path, text: str) -> None:
    """Write a secret readable by its owner only, from the first byte on."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    path.chmod(0o600)
