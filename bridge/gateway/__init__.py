"""`dotbridge serve`: a search gateway that speaks the OpenSearch REST API.

Point Dashboards, curl or any OpenSearch client at it instead of at the cluster: searches with
neural-search's syntax (`neural`, `ext.rerank`, `hybrid`) or on a per-mode alias run with the
model; everything else passes through unchanged. One concern a module:

- `upstream`: the cluster client (pass-through, the JSON requests made for a caller);
- `rewrite`: reading and rewriting search bodies (pure); `discover`: per-mode names and the
  text Discover typed (pure); `executor`: running staged searches (rerank, hybrid);
- `msearch`: `_msearch` items; `models`: served models and which one an index needs;
- `batcher`: micro-batching on the encoder's own thread; `mlapi`, `connectors`: the model API
  for ml-commons and `--print-connectors`; `app`: routing and the one error boundary;
- `limits`: what one request may ask (sizes, depth, clauses, texts); `identity`: the headers a
  caller may not set, and who may use the gateway's own API; `relay`: answers relayed safely
  past slow and failing peers; `shaping`: filter_path/format/pretty; `hitkeys`: (_id, _index);
- `server`: start-up, TLS and the event loop; `aliases`: the `dotbridge aliases` command.

Needs the `serve` extra (`pip install 'dotbridge[serve]'`): aiohttp, imported only here.
"""

from __future__ import annotations

from bridge.gateway.server import GatewayOptions, ModelOptions, print_connectors, serve

__all__ = ["GatewayOptions", "ModelOptions", "print_connectors", "serve"]
