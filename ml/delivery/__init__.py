"""Model delivery: the traffic splitter (local HAProxy, Seldon Experiments on the cluster), the feedback
endpoint that collects outcomes per request, shadow mirroring and the progressive rollout controller."""
