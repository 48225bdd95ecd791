"""`dotbridge opensearch` and `dotbridge elasticsearch`: start, stop and status of local nodes."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import click

from bridge import nodes
from bridge.cli.options import connection_options
from bridge.config import ConnectionSettings
from bridge.nodes import elasticsearch as elasticsearch_node
from bridge.nodes import opensearch as opensearch_node
from bridge.nodes.process import NodeProcess
from bridge.render import fields


def port_option(
    help: str = "The node's HTTP port on 127.0.0.1 (each port has its own data and logs).",
    **kwargs: Any,
) -> Callable[..., Any]:
    return click.option("--port", type=click.IntRange(1, 65535), help=help, **kwargs)


HOME_OPTION = click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="DOTBRIDGE_HOME",
    help="Cache and node directory [env DOTBRIDGE_HOME].",
)


def node_options(
    engine: ModuleType, node_class: type[NodeProcess], *, starting: bool = True
) -> Callable[..., Any]:
    """--port and --home for a local node of one engine, given as `node`; starting it also
    takes --version and --heap (stopping or asking about it does not)."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @port_option(default=engine.DEFAULT_PORT, show_default=True)
        @HOME_OPTION
        @functools.wraps(func)
        def wrapper(
            *args: Any,
            port: int,
            home: Path | None,
            node_version: str = engine.DEFAULT_VERSION,
            heap: str = engine.DEFAULT_HEAP,
            **kwargs: Any,
        ) -> Any:
            node = node_class(version=node_version, port=port, heap=heap, root=home)
            return func(*args, node=node, **kwargs)

        if not starting:
            return wrapper
        versions = click.option(
            "--version",
            "node_version",
            default=engine.DEFAULT_VERSION,
            show_default=True,
            type=click.Choice(list(engine.RELEASES)),
            help=f"{node_class.product} version.",
        )
        heap = click.option(
            "--heap", default=engine.DEFAULT_HEAP, show_default=True, help="JVM heap."
        )
        return versions(heap(wrapper))

    return decorate


@click.group()
def opensearch() -> None:
    """Run the embedded local OpenSearch node (with the k-NN plugin)."""


NODES_OPTION = click.option(
    "--nodes",
    "count",
    default=1,
    show_default=True,
    type=click.IntRange(1, 9),
    help="Nodes: more than one is a local cluster on HTTP ports PORT, PORT+1, ...",
)
TRANSPORT_OPTION = click.option(
    "--transport-port",
    type=click.IntRange(1, 65535),
    help="First of the cluster's transport ports (--nodes > 1). Default: free ports.",
)


@opensearch.command()
@node_options(opensearch_node, nodes.LocalNode)
@click.option(
    "--secure",
    is_flag=True,
    help="TLS, users and roles (security plugin); prints where the CA and passwords are.",
)
@NODES_OPTION
@TRANSPORT_OPTION
@click.option("--timeout", default=180.0, show_default=True, help="Seconds to wait for health.")
def start(
    node: nodes.LocalNode, secure: bool, count: int, transport_port: int | None, timeout: float
) -> None:
    """Download (once), assemble and start a local node (or --nodes N); wait until healthy."""
    node = node.with_security(secure)
    if count == 1:
        click.echo(node.start_message(node.start(timeout=timeout)))
        return
    _start_cluster(node, count, transport_port, timeout)


def _start_cluster(node: Any, count: int, transport_port: int | None, timeout: float) -> None:
    cluster = _cluster(node, count, transport_port)
    url = cluster.start(timeout=timeout)
    click.echo(cluster.members()[0].start_message(url).replace("is up", f"({count} nodes) is up"))


def _cluster(node: Any, count: int, transport_port: int | None = None) -> Any:
    """The local cluster of the node's engine whose first HTTP port is the node's."""
    from bridge.nodes.cluster import LocalCluster

    return LocalCluster(
        nodes=count,
        port=node.port,
        heap=node.heap,
        version=node.version,
        root=node.root,
        secure=getattr(node, "secure", False),
        transport_port=transport_port,
        engine=node.command,
    )


@opensearch.command()
@node_options(opensearch_node, nodes.LocalNode, starting=False)
def stop(node: nodes.LocalNode) -> None:
    """Stop the local node on the port, plain or secured, or every node of the cluster there."""
    if _cluster(node, 1).stop():
        click.echo("OpenSearch cluster stopped.")
    elif node.stop_any():
        click.echo("OpenSearch stopped.")
    else:
        click.echo("No local node was running.")


@opensearch.command()
@connection_options
@port_option("Ask the local node (or cluster) started on this port instead of --url.")
@HOME_OPTION
def status(settings: ConnectionSettings, port: int | None, home: Path | None) -> None:
    """Print version, plugins, health and nodes of the cluster at --url, or of the local node
    (or cluster) started on --port."""
    from bridge.client import cluster_status

    if port is not None:
        settings = _local_settings(port, home)
    click.echo(fields(cluster_status(settings)))


def _local_settings(port: int, home: Path | None) -> ConnectionSettings:
    """How to reach the local node on the port: the secured one (admin, its CA) when that runs."""
    plain = nodes.LocalNode(port=port, root=home)
    secured = plain.with_security(True)
    return (secured if secured.running_pid() else plain).connection_settings()


@click.group()
def elasticsearch() -> None:
    """Run a local Elasticsearch node or cluster (loopback, security off)."""


@elasticsearch.command("start")
@node_options(elasticsearch_node, nodes.ElasticsearchNode)
@NODES_OPTION
@TRANSPORT_OPTION
@click.option("--timeout", default=180.0, show_default=True, help="Seconds to wait for health.")
def es_start(
    node: nodes.ElasticsearchNode, count: int, transport_port: int | None, timeout: float
) -> None:
    """Download (once), assemble and start a local Elasticsearch node (or --nodes N); wait until
    it is healthy."""
    if count == 1:
        click.echo(node.start_message(node.start(timeout=timeout)))
        return
    _start_cluster(node, count, transport_port, timeout)


@elasticsearch.command("stop")
@node_options(elasticsearch_node, nodes.ElasticsearchNode, starting=False)
def es_stop(node: nodes.ElasticsearchNode) -> None:
    """Stop the local Elasticsearch node on the port, or every node of the cluster there."""
    if _cluster(node, 1).stop():
        click.echo("Elasticsearch cluster stopped.")
    elif node.stop():
        click.echo("Elasticsearch stopped.")
    else:
        click.echo("No local Elasticsearch node was running.")


@elasticsearch.command("status")
@node_options(elasticsearch_node, nodes.ElasticsearchNode, starting=False)
def es_status(node: nodes.ElasticsearchNode) -> None:
    """Print pid, version and health of the local Elasticsearch node, or the nodes and health of
    the local cluster started on the port."""
    cluster = _cluster(node, 1)
    click.echo(fields(cluster.status() if cluster.found() else node.status()))
