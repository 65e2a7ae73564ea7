"""The embedded default: the platform's workloads on one machine (`mlplat local up|status|down`).

Same code paths as the cluster (MLflow registry, Feast definitions, MLServer runtimes of the
reference models), with local backends: SQLite + files under `.local/`, optional `redis-server`.
"""
