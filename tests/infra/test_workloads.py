"""The workload layer as synthesized for every stack: pinned releases, wired values, monitors,
alerts with runbooks, dashboards, isolation and security contexts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contracts.alerts import ALERTS
from contracts.cluster import FEAST_MATERIALIZE, REDIS_TOKEN_SECRETS, SERVING_REDIS_SECRET
from contracts.feast import ONLINE_CLIENTS
from contracts.metrics_catalog import known, metric_names
from infra.aws.interfaces import WORKLOAD_IDENTITIES
from infra.workloads.feature_store import feature_store_yaml
from infra.workloads.seldon import KAFKA_SASL_SECRET, kafka_security
from infra.workloads.tracing import INDEX_PREFIX
from stacks.bom import load_bom
from stacks.config import load_stack_file, stack_file

REPO = Path(__file__).resolve().parents[2]
RELEASE = "kubernetes:helm.sh/v3:Release"
# release name -> BOM chart key where they differ
CHART_OF_RELEASE = {"feast": "feast-feature-server", "argocd": "argo-cd"}
WORKLOAD_NAMESPACES = ("mlflow", "feast", "seldon", "monitoring", "tracing")


def releases(s):
    return {r.name: r.inputs for r in s.of_type(RELEASE)}


def values(s, name):
    return releases(s)[name]["values"]


def manifests(s, kind):
    return [r.inputs for r in s.resources if r.type.startswith("kubernetes:") and r.inputs.get("kind") == kind]


def test_every_release_is_pinned_to_the_bom(synth, env):
    bom = load_bom()
    got = releases(synth(env))
    for name, inputs in got.items():
        chart = bom.charts[CHART_OF_RELEASE.get(name, name)]
        assert (inputs["chart"], inputs["version"], inputs["repositoryOpts"]["repo"]) == (
            chart.chart, chart.version, chart.repository), name
        assert inputs["atomic"] is True
    # Every BOM chart is installed; the NVIDIA device plugin only where a node group has role gpu, the Spark
    # Operator and the Flink operator (with cert-manager) only where the stack enables their feature jobs.
    cfg = load_stack_file(stack_file(env))
    gpu = any(g.role == "gpu" for g in cfg.node_groups.values())
    expected = (set(bom.charts) - (set() if gpu else {"nvidia-device-plugin"})
                - (set() if cfg.workloads.spark.enabled else {"spark-operator"})
                - (set() if cfg.workloads.flink.enabled else {"flink-kubernetes-operator", "cert-manager"}))
    assert {CHART_OF_RELEASE.get(n, n) for n in got} == expected


def test_releases_use_the_cluster_provider(synth):
    for r in synth("prod").of_type(RELEASE):
        assert r.provider and r.provider.endswith("::cluster-k8s"), r.name


def test_mlflow_backend_artifacts_and_auth_are_wired(synth, env):
    s = synth(env)
    v = values(s, "mlflow")
    pg = v["backendStore"]["postgres"]
    assert pg["host"] == s.stack_outputs["databaseEndpoint"] and pg["enabled"] is True
    assert v["backendStore"]["existingDatabaseSecret"]["name"] == "mlflow-db"
    assert (v["extraEnvVars"]["PGSSLMODE"], v["extraEnvVars"]["PGSSLROOTCERT"]) == (
        "verify-full", "/etc/ssl/rds/global-bundle.pem")
    assert v["artifactRoot"]["proxiedArtifactStorage"] is True
    assert v["artifactRoot"]["s3"]["bucket"] == s.stack_outputs["buckets"]["mlflow"]
    assert v["auth"]["enabled"] is True and v["auth"]["existingAdminSecret"]["name"] == "mlflow-admin"
    assert v["auth"]["postgres"]["host"] == pg["host"]  # shared permission table across replicas
    assert "mlflow.mlflow.svc.cluster.local" in v["serverAllowedHosts"]
    # Prometheus scrapes the pod address: the VPC's prefix is allowed (runtime contracts, CONFORMANCE.md).
    prefix = ".".join(s.one("aws:ec2/vpc:Vpc").inputs["cidrBlock"].split(".")[:2])
    assert f"{prefix}.*:5000" in v["serverAllowedHosts"]
    monitor = next(m for m in manifests(s, "ServiceMonitor") if m["metadata"]["name"] == "mlflow")
    assert monitor["spec"]["endpoints"][0]["basicAuth"]["password"] == {"name": "mlflow-admin", "key": "password"}
    assert "password" not in json.dumps(v["backendStore"]["postgres"])  # credentials only via the Secret
    secrets = {m["metadata"]["name"] for m in manifests(s, "Secret")}
    assert {"mlflow-db", "mlflow-admin", "mlflow-flask"} <= secrets


def test_mlflow_is_replicated_with_a_pdb_in_prod_only(synth):
    prod, dev = synth("prod"), synth("dev")
    assert values(prod, "mlflow")["replicaCount"] >= 2
    assert "mlflow" in {m["metadata"]["name"] for m in manifests(prod, "PodDisruptionBudget")}
    assert "mlflow" not in {m["metadata"]["name"] for m in manifests(dev, "PodDisruptionBudget")}


def test_feast_config_uses_redis_tls_auth_secret_and_s3(synth, env):
    s = synth(env)
    cm = next(m for m in manifests(s, "ConfigMap") if m["metadata"]["name"] == "feast-repo")
    config = cm["data"]["feature_store.yaml"]
    assert f"{s.stack_outputs['redisEndpoint']}:6379,password=${{REDIS_AUTH_TOKEN}},ssl=true" in config
    assert f"s3://{s.stack_outputs['buckets']['feast']}/registry/registry.db" in config
    server_env = values(s, "feast")["extraEnvs"]
    assert {"name": "REDIS_AUTH_TOKEN", "valueFrom": {"secretKeyRef": {"name": "feast-redis", "key": "token"}}} \
        in server_env
    cron = next(m for m in manifests(s, "CronJob") if m["metadata"]["name"] == FEAST_MATERIALIZE.name)
    assert cron["spec"]["schedule"] == load_stack_file(stack_file(env)).workloads.feast.materialization_schedule
    assert "materialize-incremental" in cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0][
        "command"][-1]


def test_stream_ingestor_reads_msk_with_iam_and_runs_our_image(synth):
    s = synth("prod")
    dep = next(m for m in manifests(s, "Deployment") if m["metadata"]["name"] == "feast-stream-ingestor")
    pod = dep["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["KAFKA_BOOTSTRAP"] == s.stack_outputs["kafkaBootstrapBrokersIam"]
    assert env["KAFKA_BOOTSTRAP"].endswith(":9098") and env["KAFKA_TOPIC"] == "fraud-transactions"
    assert pod["containers"][0]["image"].startswith(s.stack_outputs["modelServerRepositoryUrl"] + ":")
    assert pod["serviceAccountName"] == WORKLOAD_IDENTITIES["feast-ingestor"].service_account


def test_service_accounts_carry_their_irsa_roles(synth, env):
    s = synth(env)
    roles = s.stack_outputs["workloadRoleArns"]
    sas = {(m["metadata"]["namespace"], m["metadata"]["name"]): m for m in manifests(s, "ServiceAccount")}
    for key in ("mlflow", "feast", "feast-ingestor", "model-serving"):
        ident = WORKLOAD_IDENTITIES[key]
        sa = sas[(ident.namespace, ident.service_account)]
        assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == roles[key]
    for name, key in (("aws-load-balancer-controller", "aws-load-balancer-controller"),
                      ("cluster-autoscaler", "cluster-autoscaler")):
        v = values(s, name)
        sa = v["serviceAccount"] if "serviceAccount" in v else v["rbac"]["serviceAccount"]
        assert sa["annotations"]["eks.amazonaws.com/role-arn"] == roles[key]
        assert sa["name"] == WORKLOAD_IDENTITIES[key].service_account


def test_prometheus_selectors_are_not_restricted_to_helm_labels(synth, env):
    spec = values(synth(env), "kube-prometheus-stack")["prometheus"]["prometheusSpec"]
    for sel in ("serviceMonitor", "podMonitor", "rule", "probe", "scrapeConfig"):
        assert spec[f"{sel}SelectorNilUsesHelmValues"] is False


def test_a_monitor_exists_for_each_workload(synth, env):
    s = synth(env)
    monitors = {m["metadata"]["name"] for kind in ("ServiceMonitor", "PodMonitor") for m in manifests(s, kind)}
    assert {"feast", "feast-stream-ingestor", "seldon-agent", "seldon-mlserver", "seldon-envoy", "jaeger",
            "redis-exporter", "mlflow"} <= monitors
    # Ours, with basic auth (the chart's has none); the exporter flag comes from extraArgs.
    assert "serviceMonitor" not in values(s, "mlflow")
    assert values(s, "mlflow")["extraArgs"]["exposePrometheus"] == "/mlflow/metrics"


def test_seldon_kafka_tracing_and_server_image(synth, env):
    s = synth(env)
    setup, runtime, servers = (values(s, f"seldon-core-v2-{p}") for p in ("setup", "runtime", "servers"))
    brokers = setup["kafka"]["bootstrap"]
    assert brokers == s.stack_outputs["kafkaBootstrapBrokersScram"]
    assert all(b.endswith(":9096") for b in brokers.split(","))
    assert runtime["config"]["kafkaConfig"]["bootstrap"] == brokers
    # Tracing is configured once, in the setup chart's SeldonConfig, which the runtime inherits: the runtime
    # chart would render `tracingConfig.ratio` unquoted, which the SeldonRuntime CRD rejects (CONFORMANCE.md).
    assert "tracingConfig" not in runtime["config"]
    assert setup["opentelemetry"]["endpoint"] == "jaeger.tracing.svc.cluster.local:4317"
    assert servers["mlserver"]["podSpec"]["automountServiceAccountToken"] is True  # Seldon's agent needs the API
    container = servers["mlserver"]["podSpec"]["containers"][0]
    assert container["name"] == "mlserver"
    tag = load_bom().images["model-server"].tag
    assert container["image"] == f"{s.stack_outputs['modelServerRepositoryUrl']}:{tag}"
    repo = s.one("aws:ecr/repository:Repository").inputs
    assert repo["imageTagMutability"] == "IMMUTABLE" and repo["imageScanningConfiguration"]["scanOnPush"] is True
    assert repo["tags"]["PlatformVersion"] == load_bom().platform.version


def test_model_server_reads_the_online_store_over_tls_with_the_token_and_the_configured_client(synth, env):
    # Without these the runtimes have no store on the cluster and score every request on defaults.
    s = synth(env)
    container = values(s, "seldon-core-v2-servers")["mlserver"]["podSpec"]["containers"][0]
    env_vars = container["env"]
    names = [e["name"] for e in env_vars]
    by_name = {e["name"]: e for e in env_vars}
    assert by_name["MLPLAT_ONLINE_STORE_TOKEN"]["valueFrom"] == {
        "secretKeyRef": {"name": SERVING_REDIS_SECRET.name, "key": "token"}}
    # `$(VAR)` is expanded by the kubelet only from variables defined before it.
    assert names.index("MLPLAT_ONLINE_STORE_TOKEN") < names.index("MLPLAT_ONLINE_STORE_URL")
    assert by_name["MLPLAT_ONLINE_STORE_URL"]["value"] == (
        f"rediss://:$(MLPLAT_ONLINE_STORE_TOKEN)@{s.stack_outputs['redisEndpoint']}:6379/0")
    client = load_stack_file(stack_file(env)).workloads.seldon.online_client
    assert by_name["MLPLAT_ONLINE_CLIENT"]["value"] == client and client in ONLINE_CLIENTS
    secret = next(r for r in s.of_type("kubernetes:core/v1:Secret")
                  if r.inputs["metadata"]["name"] == SERVING_REDIS_SECRET.name)
    assert secret.inputs["metadata"]["namespace"] == SERVING_REDIS_SECRET.namespace == "seldon"
    assert secret.inputs["stringData"] == "[secret]"
    # Rotated with Feast's copy (tests/infra/test_runbook_names.py): Pulumi must not revert it.
    assert SERVING_REDIS_SECRET in REDIS_TOKEN_SECRETS
    servers = next(r for r in s.of_type(RELEASE) if r.name == "seldon-core-v2-servers")
    assert secret.urn in servers.dependencies


def test_model_server_takes_the_prediction_cache_settings_of_the_stack(synth, env):
    """The prediction cache (in the online store's Redis, reached as above) takes its TTL and timeout from
    the stack's `workloads.predictionCache`."""
    s = synth(env)
    container = values(s, "seldon-core-v2-servers")["mlserver"]["podSpec"]["containers"][0]
    env_vars = {e["name"]: e for e in container["env"]}
    cache = load_stack_file(stack_file(env)).workloads.prediction_cache
    assert env_vars["MLPLAT_PREDICTION_CACHE_TTL_S"]["value"] == str(cache.ttl_seconds)
    assert env_vars["MLPLAT_PREDICTION_CACHE_TIMEOUT_MS"]["value"] == str(cache.timeout_ms)


def test_seldon_kafka_authenticates_with_scram_from_a_namespaced_secret(synth, env):
    s = synth(env)
    security = values(s, "seldon-core-v2-setup")["security"]["kafka"]
    assert security["protocol"] == "SASL_SSL"
    assert security["sasl"] == {"mechanism": "SCRAM-SHA-512", "client": {
        "username": "seldon", "secret": KAFKA_SASL_SECRET, "passwordPath": "password"}}
    # No client certificate (that was mTLS); MSK's public-CA broker certificates, hostname checked.
    assert security["ssl"]["client"] == {"secret": "", "brokerValidationSecret": "",
                                         "endpointIdentificationAlgorithm": "https"}
    secrets = [r for r in s.of_type("kubernetes:core/v1:Secret")
               if r.inputs["metadata"]["name"] == KAFKA_SASL_SECRET]
    assert len(secrets) == 1
    secret = secrets[0]
    assert secret.inputs["metadata"]["namespace"] == "seldon" and secret.inputs["stringData"] == "[secret]"
    setup = next(r for r in s.of_type(RELEASE) if r.name == "seldon-core-v2-setup")
    assert secret.urn in setup.dependencies  # the password exists before the components start
    assert "password" not in json.dumps(values(s, "seldon-core-v2-runtime")).lower()
    # Egress from seldon to MSK only on the SCRAM listener (no mTLS 9094, no IAM 9098).
    egress_ports = {p["port"] for pol in manifests(s, "NetworkPolicy") if pol["metadata"]["namespace"] == "seldon"
                    for rule in pol["spec"].get("egress", []) for p in rule.get("ports", [])}
    assert 9096 in egress_ports and not {9094, 9098} & egress_ports
    # The feature ingestor (our own client) keeps MSK IAM.
    dep = next(m for m in manifests(s, "Deployment") if m["metadata"]["name"] == "feast-stream-ingestor")
    env_vars = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env_vars["KAFKA_BOOTSTRAP"] == s.stack_outputs["kafkaBootstrapBrokersIam"]


def test_alert_rules_hold_the_seven_alerts_with_existing_runbooks(synth, env):
    rules = manifests(synth(env), "PrometheusRule")
    # mlplatform-pipelines: Kubeflow Pipelines' alerts and the retrain rules (tests/infra/test_pipelines.py);
    # mlplatform-gitops: Argo CD's model Applications (tests/infra/test_gitops.py); the feature jobs' alerts where
    # the stack installs them (tests/infra/test_flink.py, test_spark_workload.py).
    cfg = load_stack_file(stack_file(env))
    jobs = [*(["mlplatform-streaming-features"] if cfg.workloads.flink.enabled else []),
            *(["mlplatform-spark-features"] if cfg.workloads.spark.enabled else [])]
    assert sorted(r["metadata"]["name"] for r in rules) == sorted(["mlplatform-alerts", "mlplatform-gitops",
                                                                   "mlplatform-pipelines", "mlplatform-rollback",
                                                                   *jobs])
    rule = [r for r in rules if r["metadata"]["name"] == "mlplatform-alerts"]
    alerts = [r for g in rule[0]["spec"]["groups"] for r in g["rules"]]
    assert len(alerts) == 7
    by_name = {a["alert"]: a for a in alerts}
    assert by_name["MLPlatModelLatencyP99Critical"]["expr"].endswith("> 0.010")
    assert by_name["MLPlatModelLatencyP99Critical"]["for"] == "5m"
    assert by_name["MLPlatModelErrorRateCritical"]["for"] == "1m"
    assert by_name["MLPlatModelLatencyP99Warning"]["for"] == "15m"
    assert by_name["MLPlatModelDriftHigh"]["expr"].endswith("> 0.2")
    assert by_name["MLPlatRedisHitRateLow"]["expr"].endswith("< 0.9")
    severities = sorted(a["labels"]["severity"] for a in alerts)
    assert severities == ["critical"] * 4 + ["warning"] * 3
    for a in alerts:
        url = a["annotations"]["runbook_url"]
        path = url.split("/blob/main/", 1)[1]
        assert path.startswith("runbooks/") and (REPO / path).is_file(), url
        runbook = (REPO / path).read_text().lower()
        for section in ("trigger", "impact", "diagnosis", "remediation", "escalation"):
            assert f"## {section}" in runbook, (path, section)


def test_dashboards_are_mounted_valid_and_query_known_metrics(synth):
    cms = [m for m in manifests(synth("prod"), "ConfigMap") if m["metadata"]["labels"].get("grafana_dashboard") == "1"]
    assert len(cms) == 6  # the four of infra/workloads/dashboards and the two feature jobs' (prod runs both)
    titles = set()
    for cm in cms:
        (text,) = cm["data"].values()
        dash = json.loads(text)
        titles.add(dash["title"])
        for panel in dash["panels"]:
            for target in panel["targets"]:
                names = metric_names(target["expr"])
                assert names, target["expr"]
                assert all(known(n) for n in names), (dash["title"], panel["title"], names)
    assert {t.split(" / ")[1] for t in titles} == {"Model performance", "Model quality", "Infrastructure", "Business",
                                                   "Streaming features", "Batch features (Spark)"}


def test_alert_queries_name_known_metrics():
    for alert in ALERTS:
        names = metric_names(alert.expr)
        assert names and all(known(n) for n in names), (alert.name, names)


def test_metric_name_parser_ignores_labels_functions_and_durations():
    expr = ('histogram_quantile(0.99, sum by (le, path) (rate(x_seconds_bucket{path=~"/v2/.+",a="b"}[5m]))) '
            '/ on (path) group_left sum(y_total offset 5m) > 0.01')
    assert metric_names(expr) == {"x_seconds_bucket", "y_total"}
    assert known("rest_server_request_duration_seconds_bucket") and not known("made_up_metric")


def test_default_deny_network_policy_in_every_workload_namespace(synth, env):
    policies = manifests(synth(env), "NetworkPolicy")
    deny = {p["metadata"]["namespace"] for p in policies if p["metadata"]["name"] == "default-deny"}
    assert set(WORKLOAD_NAMESPACES) <= deny
    for p in policies:
        if p["metadata"]["name"] == "default-deny":
            assert p["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    dns = {p["metadata"]["namespace"] for p in policies if p["metadata"]["name"] == "allow-dns"}
    assert deny == dns


def test_our_pods_run_non_root_without_privilege_escalation(synth):
    s = synth("prod")
    pods = [d["spec"]["template"]["spec"] for d in manifests(s, "Deployment")]
    pods += [c["spec"]["jobTemplate"]["spec"]["template"]["spec"] for c in manifests(s, "CronJob")]
    assert len(pods) >= 3
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert set(c["resources"]) == {"requests", "limits"}


@pytest.mark.parametrize(("stack", "storage"), [("dev", "badger"), ("prod", "opensearch")])
def test_jaeger_storage_follows_config(synth, stack, storage):
    s = synth(stack)
    v = values(s, "jaeger")
    backend = v["userconfig"]["extensions"]["jaeger_storage"]["backends"]["main_store"]
    assert list(backend) == [storage]
    receivers = v["userconfig"]["receivers"]["otlp"]["protocols"]
    assert receivers["grpc"]["endpoint"].endswith(":4317") and receivers["http"]["endpoint"].endswith(":4318")
    pvcs = [m for m in manifests(s, "PersistentVolumeClaim") if m["metadata"]["name"] == "jaeger-badger"]
    if storage == "badger":
        assert len(pvcs) == 1 and backend["badger"]["ttl"]["spans"] == "168h"
    else:
        # With the settings the `restricted` level of `tracing` requires of its pod (tests/infra/test_admission.py).
        assert not pvcs and v["esIndexCleaner"] == {
            "enabled": True, "numberOfDays": 14, "cmdlineParams": {"index-prefix": INDEX_PREFIX},
            "podSecurityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}


def test_cluster_autoscaler_matches_the_cluster_version(synth, env):
    s = synth(env)
    eks = s.one("aws:eks/cluster:Cluster").inputs["version"]
    v = values(s, "cluster-autoscaler")
    assert v["image"]["tag"] == load_bom().cluster_autoscaler_image_tags[eks]
    assert v["autoDiscovery"]["clusterName"] == s.stack_outputs["clusterName"]


def test_kafka_security_and_feature_store_yaml_helpers():
    assert kafka_security("u")["sasl"]["client"]["username"] == "u"
    with pytest.raises(ValueError, match="username is empty"):
        kafka_security("")
    text = feature_store_yaml("r.example", 6379, "bkt", tls=False)
    assert "ssl=true" not in text and "r.example:6379,password=${REDIS_AUTH_TOKEN}" in text


def test_rollback_rules_per_model_route_to_the_receiver(synth, env):
    """contracts/rollback.py: three triggers + the F1 recording rule per enabled model; Alertmanager sends
    `action="rollback"` to the model-rollback receiver, whose Deployment and Service exist."""
    s = synth(env)
    (rule,) = [r for r in manifests(s, "PrometheusRule") if r["metadata"]["name"] == "mlplatform-rollback"]
    cfg = load_stack_file(stack_file(env))
    enabled = [m for m in cfg.models.names() if cfg.models[m].enabled]
    assert [g["name"] for g in rule["spec"]["groups"]] == [f"mlplatform-rollback-{m}" for m in enabled]
    for group in rule["spec"]["groups"]:
        alerts = {r["alert"]: r for r in group["rules"] if "alert" in r}
        assert set(alerts) == {"MLPlatRollbackErrorRate", "MLPlatRollbackLatencyP99", "MLPlatRollbackF1Drop"}
        assert alerts["MLPlatRollbackErrorRate"]["expr"].endswith("> 0.05")
        assert alerts["MLPlatRollbackLatencyP99"]["expr"].endswith("> 0.01")
        assert all(a["labels"]["action"] == "rollback" for a in alerts.values())
    am = values(s, "kube-prometheus-stack")["alertmanager"]["config"]
    route = next(r for r in am["route"]["routes"] if r["receiver"] == "model-rollback")
    assert route["matchers"] == ['action = "rollback"'] and route["group_wait"] == "0s"
    hook = next(r for r in am["receivers"] if r["name"] == "model-rollback")["webhook_configs"][0]["url"]
    assert hook == "http://model-rollback-receiver.ml-training.svc.cluster.local:9095/alerts"
    deployments = {d["metadata"]["name"]: d for d in manifests(s, "Deployment")}
    receiver = deployments["model-rollback-receiver"]["spec"]["template"]["spec"]
    assert receiver["serviceAccountName"] == "training"
    assert "--kube cluster" in receiver["containers"][0]["command"][2]
    (cron,) = [c for c in manifests(s, "CronJob") if c["metadata"]["name"] == "drift-reports"]
    assert cron["spec"]["schedule"] == cfg.governance.drift_reports.schedule
    command = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:3] == ["python", "-m", "ml.data.drift_report"]
    assert str(cfg.governance.drift_reports.window_rows) in command
