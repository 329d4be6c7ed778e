"""Many nodes through Redis (issue 10): the node registry and heartbeats (:mod:`.link`),
purges fanned out over a Redis stream with acknowledgements (:mod:`.purges`), and rate-limit
buckets and penalties shared between nodes (:mod:`.limits`), behaviour signals counted across
nodes (:mod:`.signals`), and the active configuration's text (:mod:`.config`).

Everything here is optional: a node without ``--redis`` never imports the client, and a node
whose Redis is down keeps serving on its local state (purges then reach only the node that
was asked, and wait in ``cache-dir/cluster-outbox.jsonl`` until Redis is back).

Keys (prefix ``pkgedge:``): ``purges`` (the stream: body, live shields), ``epoch`` (changes
when Redis lost its data), ``nodes`` (sorted set: name → last heartbeat), ``node:NAME`` (tier,
pid), ``acks:ID`` (stream of a purge's acknowledgements: node, objects purged; read by the
publisher and by the edges waiting for the shields), ``bucket:KEY`` (hash: tokens, last),
``penalties`` (stream of penalties given), ``config`` (hash: id, source, node),
``sig:REASON:KEY`` (a signal's shared count: hash first, last, n, m; or for distinct counts a
sorted set of item hashes scored by last-seen time).
"""
