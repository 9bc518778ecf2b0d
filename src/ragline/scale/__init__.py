"""Scale-out on Ray (extra `ragline[ray]`): shard actors that serve searches
(ragline.scale.actors), an embedding actor pool for ingestion (ragline.scale.ingest) and
data-parallel training with Ray Train (ragline.scale.train). Nothing here imports Ray until a
function is called.
"""
