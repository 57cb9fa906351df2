"""The cluster mode: many front-ends and worker nodes sharing one job space in Redis
(docs/cluster.md). Imported only when a broker is configured."""
