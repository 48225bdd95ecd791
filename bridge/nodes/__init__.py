"""Local search-engine nodes that dotbridge fetches, assembles, starts and stops.

files       where downloads and homes live; unpacking a distribution into a home
maven       downloads from Maven Central (or a mirror), checksum-verified
java        finding a Java runtime; the JVM options that depend on it
instance    an instance directory (config, data, logs) per node and port
process     a node as a background process: state file, start, health wait, stop
opensearch  the embedded OpenSearch node with k-NN (LocalNode)
cluster     a local N-node cluster of either engine from the same home (LocalCluster)
"""

from __future__ import annotations

from bridge.home import base_dir
from bridge.nodes.elasticsearch import ElasticsearchNode
from bridge.nodes.opensearch import LocalNode
from bridge.nodes.process import iter_java_processes

__all__ = ["ElasticsearchNode", "LocalNode", "base_dir", "iter_java_processes"]
