"""MLServer settings generation and local process launchers (MLServer, MLflow, redis-server)."""
