"""The `dotbridge` command: subcommands parse flags and call library functions, nothing more."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from bridge import local_node
from bridge.config import ConnectionSettings


def connection_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The same connection settings on every command; the password only from env or a prompt."""

    @click.option("--url", envvar="OPENSEARCH_URL", help="Cluster URL [env OPENSEARCH_URL].")
    @click.option("--user", envvar="OPENSEARCH_USER", help="User [env OPENSEARCH_USER].")
    @click.option(
        "--password",
        envvar="OPENSEARCH_PASSWORD",
        help="Password [env OPENSEARCH_PASSWORD]; never printed.",
        show_envvar=False,
    )
    @click.option(
        "--ca-certs",
        envvar="OPENSEARCH_CA_CERTS",
        type=click.Path(exists=True, dir_okay=False),
        help="CA bundle to verify the cluster's certificate [env OPENSEARCH_CA_CERTS].",
    )
    @click.option(
        "--insecure",
        is_flag=True,
        help="Do not verify TLS certificates (not recommended).",
    )
    @functools.wraps(func)
    def wrapper(*args: Any, url, user, password, ca_certs, insecure, **kwargs: Any) -> Any:
        settings = ConnectionSettings.from_env(
            url=url,
            user=user,
            password=password,
            ca_certs=ca_certs,
            verify_certs=False if insecure else None,
        )
        return func(*args, settings=settings, **kwargs)

    return wrapper


@click.group()
@click.option("-v", "--verbose", count=True, help="More logging (-vv for debug).")
@click.version_option(package_name="dotbridge")
def main(verbose: int) -> None:
    """dotbridge: a neural bi-encoder in front of OpenSearch."""
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


# ---- opensearch --------------------------------------------------------------------------------


def node_options(func: Callable[..., Any]) -> Callable[..., Any]:
    @click.option(
        "--version",
        "os_version",
        default=local_node.DEFAULT_VERSION,
        show_default=True,
        type=click.Choice(list(local_node.RELEASES)),
        help="OpenSearch version (with its k-NN plugin).",
    )
    @click.option("--port", default=local_node.DEFAULT_PORT, show_default=True, type=int)
    @click.option("--heap", default=local_node.DEFAULT_HEAP, show_default=True, help="JVM heap.")
    @click.option(
        "--home",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="DOTBRIDGE_HOME",
        help="Cache and node directory [env DOTBRIDGE_HOME].",
    )
    @functools.wraps(func)
    def wrapper(*args: Any, os_version, port, heap, home, **kwargs: Any) -> Any:
        node = local_node.LocalNode(version=os_version, port=port, heap=heap, root=home)
        return func(*args, node=node, **kwargs)

    return wrapper


@main.group()
def opensearch() -> None:
    """Run the embedded local OpenSearch node (with the k-NN plugin)."""


@opensearch.command()
@node_options
@click.option("--timeout", default=180.0, show_default=True, help="Seconds to wait for health.")
def start(node: local_node.LocalNode, timeout: float) -> None:
    """Download (once), assemble and start a local node; wait until it is healthy."""
    url = node.start(timeout=timeout)
    click.echo(f"OpenSearch {node.version} is up at {url} (home {node.home})")


@opensearch.command()
@node_options
def stop(node: local_node.LocalNode) -> None:
    """Stop the local node."""
    if node.stop():
        click.echo("OpenSearch stopped.")
    else:
        click.echo("No local node was running.")


@opensearch.command()
@connection_options
def status(settings: ConnectionSettings) -> None:
    """Print version, plugins and health of the cluster."""
    from bridge.client import connect

    client = connect(settings)
    info = client.info()
    health = client.cluster.health()
    plugins = sorted({p["component"] for p in client.cat.plugins(format="json")})
    click.echo(f"url:      {settings.url}")
    click.echo(f"version:  {info['version']['number']}")
    click.echo(f"cluster:  {health['cluster_name']} ({health['number_of_nodes']} nodes)")
    click.echo(f"health:   {health['status']}")
    click.echo(f"plugins:  {', '.join(plugins) or '(none)'}")
