"""Kubeflow Pipelines (KFP v2) on the cluster, configured for AWS, and the models' training pipelines.

Install method (docs/WORKLOADS.md says why): KFP 2.17.0 publishes no Helm chart, its standalone install is
the release's kustomize tree. So:

- **Argo Workflows v4.0.5**, the engine KFP 2.17.0 runs on, comes from its Helm chart (argo-workflows
  1.0.14, pinned in the BOM), namespaced to `kubeflow`, controller only, S3 log archive through IRSA:
  KFP's own Argo overlay pulls Argo's manifests from GitHub at build time, the chart renders offline.
- **KFP itself** is the release's kustomize tree at the BOM's tag, rendered at `pulumi up` by the
  Kubernetes provider's kustomize support (`kustomize.v2.Directory`) from an overlay this module writes
  (`kustomization()`): the upstream bases of the PostgreSQL install (API server, persistence agent,
  scheduled-workflow controller, UI, cache, ML Metadata, their CRDs and RBAC), minus the objects the
  program owns (configuration, credentials, the IRSA service accounts), plus node placement and the
  object-store settings of AWS. The in-cluster PostgreSQL of the release is included only with
  `workloads.pipelines.database: inCluster`.

What the program declares itself: the namespace; the three IRSA service accounts (API server, pipeline
steps, UI) before any pod that uses them; `pipeline-install-config` and `kfp-launcher` (pipeline root
`s3://<pipelines bucket>/pipeline-root`, S3 credentials from the pod's web identity); the database
credentials (generated) and, with `managed`, the TLS proxy to RDS (`kfp-db-proxy`: KFP 2.17 connects to
PostgreSQL with `sslmode=disable`, the platform's RDS instance accepts TLS only; the proxy verifies the server
against the RDS CA bundle, infra/workloads/rds_tls.py); default-deny
NetworkPolicies with explicit allows; ServiceMonitors and a PrometheusRule; the UI through a port-forward
or an internal NLB; the committed IR of every enabled model, the bootstrap document and the bootstrap Job
(ml/pipelines/kfp_api.py: upload, recurring run per model, first-install run); the drift-retrain receiver
(ml/pipelines/retrain.py) with its PrometheusRule (the Alertmanager route is in observability.py).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
import yaml

from contracts import model_registry
from contracts.cluster import (
    MLFLOW_NAMESPACE,
    NODE_ROLE_LABEL,
    PIPELINES_NAMESPACE,
    SELDON_NAMESPACE,
    WORKLOAD_IDENTITIES,
)
from contracts.pipelines import (
    DEPLOY_SECRET_DEFAULT,
    PARAMETERS,
    SAMPLE_DATA,
    cron_to_kfp,
    ir_path,
    pipeline_name,
    retrain_rule_groups,
)
from infra.aws.storage import FEAST_OFFLINE_PREFIX, PIPELINE_LOGS_PREFIX, PIPELINE_PACKAGES_PREFIX, PIPELINE_ROOT_PREFIX
from infra.workloads.args import WorkloadArgs
from infra.workloads.gitops import PORT_SSH
from infra.workloads.isolation import (
    ANYWHERE,
    MONITORING_NAMESPACE,
    PORT_HTTPS,
    PORT_POSTGRES,
    EgressRule,
    IngressRule,
    NamespacePolicy,
    PeerEgressRule,
    network_policies,
    pod_disruption_budget,
    zone_spread,
)
from infra.workloads.kube import (
    CONTAINER_SECURITY_CONTEXT,
    PSS_BASELINE,
    TMP_MOUNT,
    helm_release,
    labels,
    namespace,
    pod_security_context,
    service_monitor,
    tmp_volume,
)
from infra.workloads.rds_tls import ca_mount, ca_volume, copy_container, pgbouncer_settings
from stacks.context import StackContext
from stacks.delivery import deploy_parameter, writes_tree_over_ssh

NAMESPACE = PIPELINES_NAMESPACE
MANIFESTS = "kubeflow-pipelines"  # the BOM's `manifests` key
ARGO_RELEASE = "argo-workflows"
# The chart's controller Service labels (templates/_helpers.tpl "argo-workflows.labels").
ARGO_CONTROLLER_SELECTOR = {"app.kubernetes.io/component": "workflow-controller",
                            "app.kubernetes.io/instance": ARGO_RELEASE}
API_SERVICE, API_PORT = "ml-pipeline", 8888
UI_SERVICE, UI_PORT = "ml-pipeline-ui", 3000
UI_LB_SERVICE = "ml-pipeline-ui-internal"
RETRAIN, RETRAIN_PORT = "pipelines-retrain", 9096
DB_PROXY, DB_PROXY_REPLICAS = "kfp-db-proxy", 2
MLFLOW_PORT = 5000
BOOTSTRAP_CONFIG, IR_CONFIG = "pipelines-bootstrap", "pipelines-ir"
MLFLOW_SECRET = "mlflow-credentials"  # ml/pipelines/definition.py MLFLOW_SECRET: the steps read it
BOOTSTRAP_DIR, IR_DIR = "/etc/mlplat/bootstrap", "/etc/mlplat/pipelines"
BOOTSTRAP_DEADLINE_S = 3600
OVERLAY_ROOT = Path(".cache") / "kustomize"  # relative to the project directory, where `pulumi up` runs
# The KFP databases (api server, cache, ML Metadata), on the in-cluster PostgreSQL or the managed instance.
PIPELINE_DB, CACHE_DB, MLMD_DB = "mlpipeline", "cachedb", "metadb"
API_URL = f"http://{API_SERVICE}.{NAMESPACE}.svc.cluster.local:{API_PORT}"
TMP_VOLUME = tmp_volume("1Gi")
# KFP's Argo overlay: retry a step whose pod a node shutdown, preemption or eviction ended.
TRANSIENT_ERRORS = "(?i)(imminent node shutdown|node is shutting down|preempt|evict|spot|pod deleted)"

# Upstream bases of the overlay (paths inside the release's manifests/kustomize tree).
BASES = ("base/pipeline/cluster-scoped", "base/installs/generic/postgres", "base/metadata/overlays/postgres")
IN_CLUSTER_DB_BASE = "third-party/postgresql/base"
# Objects of the upstream bases the program declares itself (configuration, credentials, IRSA accounts).
OWNED = (("v1", "ConfigMap", "pipeline-install-config"), ("v1", "ConfigMap", "kfp-launcher"),
         ("v1", "Secret", "postgres-secret-extended"), ("v1", "ConfigMap", "metadata-postgres-db-parameters"),
         ("v1", "Secret", "metadata-postgres-db-secrets"),
         *(("v1", "ServiceAccount", WORKLOAD_IDENTITIES[i].service_account)
           for i in ("pipelines", "pipeline-runner", "pipelines-ui")))
IN_CLUSTER_DB_OWNED = (("v1", "Secret", "postgres-secret"),)
# KFP v1's cache: a mutating webhook whose deployer may approve CertificateSigningRequests and edit admission
# webhooks cluster-wide. The platform runs v2 pipelines only (`BLOCK_V1_PIPELINES`; v2 caching is the API
# server's and every step disables it), so the v1 cache server and its deployer are left out.
V1_CACHE = (("apps/v1", "Deployment", "cache-server"), ("v1", "Service", "cache-server"),
            ("v1", "ServiceAccount", "kubeflow-pipelines-cache"),
            ("rbac.authorization.k8s.io/v1", "Role", "kubeflow-pipelines-cache-role"),
            ("rbac.authorization.k8s.io/v1", "RoleBinding", "kubeflow-pipelines-cache-binding"),
            ("apps/v1", "Deployment", "cache-deployer-deployment"),
            ("rbac.authorization.k8s.io/v1", "Role", "kubeflow-pipelines-cache-deployer-role"),
            ("rbac.authorization.k8s.io/v1", "RoleBinding", "kubeflow-pipelines-cache-deployer-rolebinding"))
# The release's in-cluster databases, dropped with `managed`.
IN_CLUSTER_DB_OBJECTS = (("apps/v1", "Deployment", "metadata-postgres-db"), ("v1", "Service", "metadata-postgres-db"),
                         ("v1", "PersistentVolumeClaim", "metadata-postgres"))
# KFP's Deployments (all on the general node group).
DEPLOYMENTS = ("ml-pipeline", "ml-pipeline-persistenceagent", "ml-pipeline-scheduledworkflow", "ml-pipeline-ui",
               "ml-pipeline-viewer-crd", "ml-pipeline-visualizationserver", "metadata-grpc-deployment",
               "metadata-envoy-deployment")


def enabled_models(ctx: StackContext) -> list[str]:
    return [n for n in ctx.cfg.models.names() if ctx.cfg.models[n].enabled]


def spec_module_of(name: str) -> str:
    return next(m for m in model_registry.spec_modules() if model_registry.load_spec(m).name == name)


def committed_ir(name: str) -> str | None:
    """The compiled IR committed beside the model's spec (`mlplat pipeline compile --in-place`); None for a
    plugin package that ships none (the bootstrap Job then compiles it in the image, which has kfp)."""
    path = ir_path(spec_module_of(name))
    return path.read_text() if path.is_file() else None


def pipeline_root(bucket: str) -> str:
    return f"s3://{bucket}/{PIPELINE_ROOT_PREFIX.rstrip('/')}"


def db_host(ctx: StackContext) -> str:
    return DB_PROXY if ctx.cfg.workloads.pipelines.database == "managed" else "postgres"


def install_config(ctx: StackContext, bucket: str) -> dict[str, str]:
    """`pipeline-install-config`: the keys the release's Deployments read (base/installs/generic/postgres)."""
    return {
        "appName": "pipeline", "appVersion": ctx.bom.manifests[MANIFESTS].version, "dbType": "postgres",
        "postgresHost": db_host(ctx), "postgresPort": "5432", "mlmdDb": MLMD_DB, "cacheDb": CACHE_DB,
        "pipelineDb": PIPELINE_DB, "bucketName": bucket, "defaultPipelineRoot": pipeline_root(bucket),
        "autoUpdatePipelineDefaultVersion": "true", "cronScheduleTimezone": "UTC",
        "cacheImage": "ghcr.io/containerd/busybox", "cacheNodeRestrictions": "false",
        "MAXIMUM_CACHE_STALENESS": "", "DEFAULT_CACHE_STALENESS": "", "ConMaxLifeTime": "120s", "LOG_LEVEL": "info",
        "ARTIFACTS_PROXY_ENABLED": "false", "BLOCK_V1_PIPELINES": "true", "V1_ALLOWED_NAMESPACES": "",
        "defaultSecurityContextRunAsUser": "", "defaultSecurityContextRunAsGroup": "",
        "defaultSecurityContextRunAsNonRoot": "", "defaultSecurityContextHostUsers": "false",
        "USERID_HEADER": "kubeflow-userid", "USERID_PREFIX": "",
    }


def launcher_config(region: str, bucket: str) -> dict[str, str]:
    """`kfp-launcher`: where step artifacts go, and S3 credentials from the pod (IRSA web identity)."""
    providers = {"s3": {"default": {"endpoint": f"s3.{region}.amazonaws.com", "region": region,
                                    "disableSSL": False, "forcePathStyle": False, "credentials": {"fromEnv": True}}}}
    return {"defaultPipelineRoot": pipeline_root(bucket), "providers": yaml.safe_dump(providers, sort_keys=True)}


def _delete(api_version: str, kind: str, name: str) -> dict[str, Any]:
    return {"patch": yaml.safe_dump({"apiVersion": api_version, "kind": kind, "metadata": {"name": name},
                                     "$patch": "delete"}, sort_keys=False)}


def kustomization(ctx: StackContext) -> dict[str, Any]:
    """The overlay over the release's tree at the BOM's tag (remote bases; `kustomize build` fetches them)."""
    manifests = ctx.bom.manifests[MANIFESTS]
    managed = ctx.cfg.workloads.pipelines.database == "managed"
    region = ctx.cfg.region
    resources = [manifests.url(b) for b in BASES] + ([] if managed else [manifests.url(IN_CLUSTER_DB_BASE)])
    owned = [*OWNED, *V1_CACHE, *(() if managed else IN_CLUSTER_DB_OWNED), *(IN_CLUSTER_DB_OBJECTS if managed else ())]
    patches = [_delete(*o) for o in owned]
    patches.append({"target": {"kind": "Deployment"}, "patch": yaml.safe_dump([
        {"op": "add", "path": "/spec/template/spec/nodeSelector", "value": {NODE_ROLE_LABEL: "general"}}])})
    # The API server reaches S3 through its web identity (no keys: KFP 2.17 uses the default AWS chain when
    # the access key and secret are empty) and TLS.
    patches.append({"patch": yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": API_SERVICE},
        "spec": {"template": {"spec": {"containers": [{"name": "ml-pipeline-api-server", "env": [
            {"name": "OBJECTSTORECONFIG_HOST", "value": f"s3.{region}.amazonaws.com"},
            {"name": "OBJECTSTORECONFIG_REGION", "value": region},
            {"name": "OBJECTSTORECONFIG_SECURE", "value": "true"},
            {"name": "OBJECTSTORECONFIG_PIPELINEPATH", "value": PIPELINE_PACKAGES_PREFIX.rstrip("/")},
        ]}]}}}}, sort_keys=False)})
    # The API server's Service has no labels upstream: one for its ServiceMonitor.
    patches.append({"patch": yaml.safe_dump({"apiVersion": "v1", "kind": "Service",
                                             "metadata": {"name": API_SERVICE, "labels": {"app": API_SERVICE}}},
                                            sort_keys=False)})
    patches.append({"patch": yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": UI_SERVICE},
        "spec": {"template": {"spec": {"containers": [{"name": UI_SERVICE, "env": [
            {"name": "AWS_REGION", "value": region}, {"name": "AWS_S3_ENDPOINT", "value": f"s3.{region}.amazonaws.com"},
            {"name": "ARGO_ARCHIVE_PREFIX", "value": PIPELINE_LOGS_PREFIX.rstrip("/")},
        ]}]}}}}, sort_keys=False)})
    if managed:  # ML Metadata and its init container point at the TLS proxy instead of metadata-postgres-db
        patches.append({"target": {"kind": "Deployment", "name": "metadata-grpc-deployment"}, "patch": yaml.safe_dump([
            {"op": "replace", "path": "/spec/template/spec/containers/0/args/2",
             "value": f"--postgres_config_host={DB_PROXY}"},
            {"op": "replace", "path": "/spec/template/spec/initContainers/0/env/0/value", "value": DB_PROXY}])})
    return {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "namespace": NAMESPACE,
            "resources": resources,
            "labels": [{"includeSelectors": True, "pairs": {"application-crd-id": "kubeflow-pipelines"}}],
            "patches": patches}


class _Literal(yaml.SafeDumper):
    """Multi-line strings (the inline patches) as YAML block literals: readable in the overlay file."""


_Literal.add_representer(str, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s,
                                                              style="|" if "\n" in s else None))


def overlay_text(ctx: StackContext) -> str:
    return yaml.dump(kustomization(ctx), Dumper=_Literal, sort_keys=False)


def overlay_dir(ctx: StackContext) -> str:
    """Write the overlay under `.cache/kustomize/` (content-addressed, so a changed overlay is a new
    directory and a changed input of the Directory resource) and return its project-relative path."""
    text = overlay_text(ctx)
    version = ctx.bom.manifests[MANIFESTS].version
    rel = OVERLAY_ROOT / f"{MANIFESTS}-{version}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"
    path = Path(__file__).resolve().parents[2] / rel
    path.mkdir(parents=True, exist_ok=True)
    if not (path / "kustomization.yaml").is_file() or (path / "kustomization.yaml").read_text() != text:
        (path / "kustomization.yaml").write_text(text)
    return rel.as_posix()


def argo_values(ctx: StackContext, bucket: pulumi.Input[str]) -> dict[str, Any]:
    """Argo Workflows as KFP's third-party/argo overlay configures it, on AWS: namespaced controller, no Argo
    server, archived step logs in the pipelines bucket through the pod's IRSA role."""
    region = ctx.cfg.region
    return {
        "singleNamespace": True,
        "crds": {"install": True},
        "server": {"enabled": False},
        # KFP submits every workflow as `pipeline-runner` and its Role covers what the steps need.
        "workflow": {"rbac": {"create": False}},
        "controller": {
            "nodeSelector": {NODE_ROLE_LABEL: "general"},
            # The chart's controller container meets `restricted`; its pod sets no seccomp profile.
            "podSecurityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
            "extraEnv": [{"name": "TRANSIENT_ERROR_PATTERN", "value": TRANSIENT_ERRORS}],
            "workflowDefaults": {"spec": {
                "ttlStrategy": {"secondsAfterCompletion": 3600, "secondsAfterSuccess": 3600,
                                "secondsAfterFailure": 3600},
                "templateDefaults": {"retryStrategy": {"limit": "2", "retryPolicy": "OnError"}},
            }},
            # Its ServiceMonitor is ours (the chart's needs the monitoring API among Helm's capabilities).
            "metricsConfig": {"enabled": True},
        },
        "executor": {"securityContext": {**CONTAINER_SECURITY_CONTEXT, "readOnlyRootFilesystem": False,
                                         "runAsUser": 65532}},
        "useStaticCredentials": False,
        "artifactRepository": {"archiveLogs": True, "s3": {
            "bucket": bucket, "endpoint": f"s3.{region}.amazonaws.com", "region": region, "insecure": False,
            "useSDKCreds": True, "keyFormat": f"{PIPELINE_LOGS_PREFIX}{{{{workflow.name}}}}/{{{{pod.name}}}}"}},
    }


def run_parameters(ctx: StackContext, buckets: dict[str, str], mlflow_uri: str) -> dict[str, Any]:
    """The cluster's arguments of every run (contracts/pipelines.py PARAMETERS)."""
    p, gitops = ctx.cfg.workloads.pipelines, ctx.cfg.workloads.gitops
    params = {
        "data_uri": p.data_uri, "seed": 0, "offline_uri": f"s3://{buckets['feast']}/{FEAST_OFFLINE_PREFIX.rstrip('/')}",
        "feast_repo": "", "promotion": ctx.cfg.governance.promotion, "tracking_uri": mlflow_uri,
        "slot_bucket": buckets["models"], "slot_dir": "", "serving_url": "",
        # With GitOps Argo CD owns the Models: a patch would be undone by self-heal, so the step leaves them alone
        # and writes the deploy tree (with the stack's deploy credentials; without them `mlplat model promote`).
        "seldon_namespace": "" if gitops.enabled else SELDON_NAMESPACE,
        "deploy": deploy_parameter(ctx.cfg, buckets["models"]) if gitops.enabled and gitops.credentials_secret else "",
        "deploy_secret": gitops.credentials_secret or DEPLOY_SECRET_DEFAULT,
        "version_tags": json.dumps({"mlplat.environment": ctx.cfg.environment}), "quick": False,
    }
    unknown = set(params) - set(PARAMETERS)
    if unknown:
        raise KeyError(f"run parameters {sorted(unknown)} are not pipeline parameters (contracts/pipelines.py)")
    return params


def bootstrap_document(ctx: StackContext, image: str, buckets: dict[str, str], mlflow_uri: str) -> dict[str, Any]:
    """What the bootstrap Job does (ml/pipelines/kfp_api.py `bootstrap`), per enabled model."""
    p = ctx.cfg.workloads.pipelines
    common = run_parameters(ctx, buckets, mlflow_uri)
    pipelines = {}
    for name in enabled_models(ctx):
        m = ctx.cfg.models[name]
        gates = {} if p.data_uri == SAMPLE_DATA else dict(m.quality_gates)
        pipelines[name] = {
            "pipeline": pipeline_name(name),
            "schedule": cron_to_kfp(m.training_schedule) if m.training_schedule else None,
            # On generated sample data the spec's sample floors decide (as `mlplat local up`), else the stack's.
            "parameters": {**common, "gates": json.dumps(gates, sort_keys=True) if gates else ""},
            "firstInstall": p.first_install_runs,
        }
    bom = ctx.bom.images["model-server"]
    return {"image": image, "placeholderImage": bom.ref, "experiment": "mlplat-training", "pipelines": pipelines}


@dataclass(frozen=True, kw_only=True)
class PipelinesArgs(WorkloadArgs):
    """Inputs of `Pipelines` (settings from `workloads.pipelines`)."""

    image: pulumi.Input[str]
    """The model-server image: the pipeline steps, the bootstrap Job and the retrain receiver run in it."""
    mlflow_tracking_uri: str
    """The in-cluster tracking server the `register` step logs to."""
    mlflow_password: pulumi.Input[str] | None = None
    """The tracking server's admin password (basic auth), copied into `mlflow-credentials` for the steps."""
    seldon: pulumi.Resource | None = None
    """The Seldon installation (its namespace): the `publish` step touches the champion Models there."""


class Pipelines(pulumi.ComponentResource):
    api_url: str

    def __init__(self, name: str, args: PipelinesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlplatform:workloads:Pipelines", name, None, opts)
        ctx, data, vpc_cidr = args.ctx, args.data, args.vpc_cidr
        cfg = ctx.cfg.workloads.pipelines
        self.api_url = API_URL
        ns = namespace(NAMESPACE, self, pss=PSS_BASELINE)
        after_ns = pulumi.ResourceOptions(parent=self, depends_on=[ns])
        bucket = pulumi.Output.from_input(data.buckets["pipelines"])
        # S3, STS, ECR, the Kubernetes API, the deploy repository (the publish step; SSH only for an SSH URL)
        git_ssh = (PORT_SSH,) if writes_tree_over_ssh(ctx.cfg) else ()
        egress = [EgressRule(ANYWHERE, (PORT_HTTPS, *git_ssh)),
                  PeerEgressRule((MLFLOW_NAMESPACE,), (MLFLOW_PORT,))]  # the tracking server
        if cfg.database == "managed":
            egress.append(EgressRule(vpc_cidr, (PORT_POSTGRES,)))  # the proxy to RDS
        ingress = [IngressRule((MONITORING_NAMESPACE,), (RETRAIN_PORT,))]  # Alertmanager -> the retrain receiver
        network_policies(NamespacePolicy(NAMESPACE, ingress=ingress, egress=egress), self, [ns])
        if cfg.ui == "internalLoadBalancer":
            k8s.networking.v1.NetworkPolicy(
                f"{name}-allow-ui-from-vpc",
                metadata={"name": "allow-ui-from-vpc", "namespace": NAMESPACE, "labels": labels("isolation")},
                spec={"podSelector": {"matchLabels": {"app": UI_SERVICE}}, "policyTypes": ["Ingress"],
                      "ingress": [{"from": [{"ipBlock": {"cidr": vpc_cidr}}],
                                   "ports": [{"protocol": "TCP", "port": UI_PORT}]}]}, opts=after_ns)
        accounts = [self._service_account(ident, data.role_arns.get(ident), ns)
                    for ident in ("pipelines", "pipeline-runner", "pipelines-ui")]
        owned = self._configuration(name, ctx, data, bucket, after_ns)
        if args.mlflow_password is not None:  # the register/publish steps' MLflow login (ml/pipelines/definition.py)
            owned.append(k8s.core.v1.Secret(
                f"{name}-mlflow-credentials",
                metadata={"name": MLFLOW_SECRET, "namespace": NAMESPACE,
                          "labels": labels("kubeflow-pipelines", "mlflow")},
                type="Opaque", string_data={"username": "admin", "password": args.mlflow_password}, opts=after_ns))
        if cfg.database == "managed":
            owned.extend(self._db_proxy(name, ctx, data, args.image, after_ns))
        argo = helm_release(ARGO_RELEASE, ctx, "argo-workflows", NAMESPACE, bucket.apply(lambda b: argo_values(ctx, b)),
                            self, depends_on=[ns, *accounts, *args.depends_on])
        kfp = k8s.kustomize.v2.Directory(
            f"{name}-kubeflow-pipelines", directory=overlay_dir(ctx), namespace=NAMESPACE,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[ns, argo, *accounts, *owned]))
        if ctx.cfg.workloads.observability.enabled:  # monitoring CRDs come with kube-prometheus-stack
            service_monitor(API_SERVICE, NAMESPACE, {"app": API_SERVICE, "application-crd-id": "kubeflow-pipelines"},
                            "http", self, depends_on=[*args.depends_on, kfp])
            service_monitor("workflow-controller", NAMESPACE, ARGO_CONTROLLER_SELECTOR, "metrics", self,
                            depends_on=[*args.depends_on, argo])
            self._rules(name, ctx, args.depends_on)
        if cfg.ui == "internalLoadBalancer":
            self._internal_ui(name, vpc_cidr, kfp)
        self._bootstrap(name, ctx, data, args, bucket, kfp, ns)
        if cfg.retrain_on_drift:
            self._retrain_receiver(name, ctx, args, kfp, ns)
        if args.seldon is not None and not ctx.cfg.workloads.gitops.enabled:
            # With GitOps the deploy tree in git is what serves: the step never patches a Model Argo CD owns.
            self._seldon_access(name, args.seldon, accounts[1])
        self.register_outputs({"apiUrl": API_URL, "pipelineRoot": bucket.apply(pipeline_root)})

    def _service_account(self, identity: str, role_arn: pulumi.Input[str] | None,
                         ns: k8s.core.v1.Namespace) -> k8s.core.v1.ServiceAccount:
        """The release's service account, declared here with its IRSA role before any pod uses it. Tokens are
        mounted: these pods talk to the Kubernetes API (the API server creates workflows, the launcher reads
        its ConfigMap, the UI reads pod logs)."""
        ident = WORKLOAD_IDENTITIES[identity]
        return k8s.core.v1.ServiceAccount(
            f"sa-{identity}",
            metadata={"name": ident.service_account, "namespace": ident.namespace,
                      "labels": labels("kubeflow-pipelines", identity),
                      "annotations": {"eks.amazonaws.com/role-arn": role_arn} if role_arn is not None else None},
            automount_service_account_token=True,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[ns]))

    def _configuration(self, name: str, ctx: StackContext, data: Any, bucket: pulumi.Output[str],
                       opts: pulumi.ResourceOptions) -> list[pulumi.Resource]:
        managed = ctx.cfg.workloads.pipelines.database == "managed"
        meta = {"namespace": NAMESPACE, "labels": labels("kubeflow-pipelines", "config")}
        made: list[pulumi.Resource] = [
            k8s.core.v1.ConfigMap(f"{name}-install-config", metadata={"name": "pipeline-install-config", **meta},
                                  data=bucket.apply(lambda b: install_config(ctx, b)), opts=opts),
            k8s.core.v1.ConfigMap(f"{name}-launcher", metadata={"name": "kfp-launcher", **meta},
                                  data=bucket.apply(lambda b: launcher_config(ctx.cfg.region, b)), opts=opts),
            # Empty keys: the API server and the UI use their web identity (IRSA), never static keys.
            k8s.core.v1.Secret(f"{name}-object-store", metadata={"name": "mlpipeline-minio-artifact", **meta},
                               type="Opaque", string_data={"accesskey": "", "secretkey": ""}, opts=opts),
            k8s.core.v1.ConfigMap(f"{name}-mlmd-db", metadata={"name": "metadata-postgres-db-parameters", **meta},
                                  data={"POSTGRES_PORT": "5432", "POSTGRES_DBNAME": MLMD_DB}, opts=opts),
        ]
        if managed:
            user, password = data.database.username, data.database.password
        else:
            user = "user"  # the release's in-cluster PostgreSQL creates this superuser (pg-deployment.yaml)
            password = random.RandomPassword(f"{name}-db-password", length=32, special=False,
                                             opts=pulumi.ResourceOptions(parent=self)).result
            # The release's in-cluster PostgreSQL reads its superuser password from `postgres-secret`.
            made.append(k8s.core.v1.Secret(f"{name}-db-superuser", metadata={"name": "postgres-secret", **meta},
                                           type="Opaque", string_data={"root_password": password}, opts=opts))
        made.append(k8s.core.v1.Secret(f"{name}-db-credentials", metadata={"name": "postgres-secret-extended", **meta},
                                       type="Opaque", string_data={"username": user, "password": password}, opts=opts))
        made.append(k8s.core.v1.Secret(f"{name}-mlmd-credentials", metadata={"name": "metadata-postgres-db-secrets",
                                                                             **meta},
                                       type="Opaque",
                                       string_data={"POSTGRES_USER": user, "POSTGRES_PASSWORD": password},
                                       opts=opts))
        return made

    def _db_proxy(self, name: str, ctx: StackContext, data: Any, ca_image: pulumi.Input[str],
                  opts: pulumi.ResourceOptions) -> list[pulumi.Resource]:
        """PgBouncer between KFP (plain PostgreSQL inside the namespace) and RDS (TLS, the server verified against
        the RDS CA bundle that the init container `rds-ca` copies from the model-server image)."""
        selector = {"app.kubernetes.io/name": DB_PROXY}
        meta = {"namespace": NAMESPACE, "labels": labels("kubeflow-pipelines", "db-proxy")}
        ini = pulumi.Output.from_input(data.database.host).apply(lambda host: "\n".join([
            "[databases]", f"* = host={host} port={data.database.port}", "", "[pgbouncer]",
            "listen_addr = 0.0.0.0", "listen_port = 5432", "auth_type = scram-sha-256",
            "auth_file = /etc/pgbouncer/secret/userlist.txt", "pool_mode = session", "max_client_conn = 200",
            "default_pool_size = 20", *pgbouncer_settings(), "ignore_startup_parameters = extra_float_digits",
            ""]))
        config = k8s.core.v1.ConfigMap(f"{name}-db-proxy-config", metadata={"name": DB_PROXY, **meta},
                                       data={"pgbouncer.ini": ini}, opts=opts)
        userlist = pulumi.Output.all(data.database.username, data.database.password).apply(
            lambda a: f'"{a[0]}" "{a[1]}"\n')
        secret = k8s.core.v1.Secret(f"{name}-db-proxy-users", metadata={"name": DB_PROXY, **meta}, type="Opaque",
                                    string_data={"userlist.txt": userlist}, opts=opts)
        image = ctx.bom.images["pgbouncer"].ref
        deployment = k8s.apps.v1.Deployment(
            f"{name}-db-proxy", metadata={"name": DB_PROXY, **meta},
            spec={"replicas": DB_PROXY_REPLICAS, "selector": {"matchLabels": selector}, "template": {
                "metadata": {"labels": {**labels("kubeflow-pipelines", "db-proxy"), **selector}},
                "spec": {
                    "automountServiceAccountToken": False, "securityContext": pod_security_context(),
                    "topologySpreadConstraints": zone_spread(selector),
                    "nodeSelector": {NODE_ROLE_LABEL: "general"},
                    "initContainers": [copy_container(ca_image, CONTAINER_SECURITY_CONTEXT)],
                    "containers": [{
                        "name": "pgbouncer", "image": image, "command": ["pgbouncer", "/etc/pgbouncer/pgbouncer.ini"],
                        "ports": [{"name": "postgres", "containerPort": 5432}],
                        "readinessProbe": {"tcpSocket": {"port": "postgres"}},
                        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                                      "limits": {"cpu": "500m", "memory": "256Mi"}},
                        "securityContext": CONTAINER_SECURITY_CONTEXT,
                        "volumeMounts": [{"name": "config", "mountPath": "/etc/pgbouncer", "readOnly": True},
                                         {"name": "secret", "mountPath": "/etc/pgbouncer/secret", "readOnly": True},
                                         ca_mount(), TMP_MOUNT],
                    }],
                    "volumes": [{"name": "config", "configMap": {"name": DB_PROXY}},
                                {"name": "secret", "secret": {"secretName": DB_PROXY}}, ca_volume(), TMP_VOLUME],
                }}},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[config, secret]))
        pod_disruption_budget(DB_PROXY, NAMESPACE, selector, DB_PROXY_REPLICAS, self, [deployment])
        service = k8s.core.v1.Service(
            f"{name}-db-proxy-service", metadata={"name": DB_PROXY, **meta},
            spec={"selector": selector, "ports": [{"name": "postgres", "port": 5432, "targetPort": 5432,
                                                   "protocol": "TCP"}]}, opts=opts)
        return [deployment, service]

    def _seldon_access(self, name: str, seldon: pulumi.Resource, runner: pulumi.Resource) -> None:
        """The `publish` step patches `<model>-champion` (Seldon reloads the slot): get/patch on Models in
        `seldon`, for the steps' account only."""
        meta = {"name": "pipeline-runner-publish", "namespace": SELDON_NAMESPACE,
                "labels": labels("kubeflow-pipelines", "publish")}
        role = k8s.rbac.v1.Role(
            f"{name}-publish-role", metadata=meta,
            rules=[{"apiGroups": ["mlops.seldon.io"], "resources": ["models"], "verbs": ["get", "patch"]}],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[seldon]))
        k8s.rbac.v1.RoleBinding(
            f"{name}-publish-binding", metadata=meta,
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": meta["name"]},
            subjects=[{"kind": "ServiceAccount", "namespace": NAMESPACE,
                       "name": WORKLOAD_IDENTITIES["pipeline-runner"].service_account}],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[role, runner]))

    def _internal_ui(self, name: str, vpc_cidr: str, kfp: pulumi.Resource) -> None:
        """The UI on an internal NLB (aws-load-balancer-controller), reachable from the VPC only."""
        k8s.core.v1.Service(
            f"{name}-ui-internal",
            metadata={"name": UI_LB_SERVICE, "namespace": NAMESPACE, "labels": labels("kubeflow-pipelines", "ui"),
                      "annotations": {"service.beta.kubernetes.io/aws-load-balancer-type": "external",
                                      "service.beta.kubernetes.io/aws-load-balancer-scheme": "internal",
                                      "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "ip"}},
            spec={"type": "LoadBalancer", "selector": {"app": UI_SERVICE, "application-crd-id": "kubeflow-pipelines"},
                  "loadBalancerSourceRanges": [vpc_cidr],
                  "ports": [{"name": "http", "port": 80, "targetPort": UI_PORT, "protocol": "TCP"}]},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[kfp]))

    def _rules(self, name: str, ctx: StackContext, depends_on: list[pulumi.Resource]) -> None:
        """Alerts of the installation (what to do: docs/WORKLOADS.md, "Operating the training pipelines") and, per
        enabled model, the retrain alert (runbooks/model-drift.md)."""
        base = ctx.cfg.workloads.observability.runbook_base_url
        runbook = f"{base}docs/WORKLOADS.md#operating-the-training-pipelines"
        groups: list[dict[str, Any]] = [{"name": "mlplatform-pipelines", "interval": "1m", "rules": [
            {"alert": "MLPlatPipelinesApiDown",
             "expr": f'absent(up{{namespace="{NAMESPACE}",service="{API_SERVICE}"}} == 1)',
             "for": "10m", "labels": {"severity": "critical", "platform": "mlplatform"},
             "annotations": {"summary": "the Kubeflow Pipelines API server is not scraped up: no run starts",
                             "runbook_url": runbook}},
            {"alert": "MLPlatPipelineStepsFailing",
             "expr": f'sum(kube_pod_status_phase{{namespace="{NAMESPACE}",phase="Failed"}}) > 0', "for": "15m",
             "labels": {"severity": "warning", "platform": "mlplatform"},
             "annotations": {"summary": "{{ $value }} pipeline step pod(s) failed in kubeflow",
                             "runbook_url": runbook}},
        ]}]
        if ctx.cfg.workloads.pipelines.retrain_on_drift:
            groups += retrain_rule_groups(enabled_models(ctx), base)
        k8s.apiextensions.CustomResource(
            f"{name}-rules", api_version="monitoring.coreos.com/v1", kind="PrometheusRule",
            metadata={"name": "mlplatform-pipelines", "namespace": MONITORING_NAMESPACE,
                      "labels": labels("alerts", "pipelines")},
            spec={"groups": groups}, opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on))

    def _bootstrap(self, name: str, ctx: StackContext, data: Any, args: PipelinesArgs, bucket: pulumi.Output[str],
                   kfp: pulumi.Resource, ns: k8s.core.v1.Namespace) -> None:
        """The committed IR, the bootstrap document and the Job that uploads, schedules and first-installs."""
        models = enabled_models(ctx)
        if not models:
            return
        meta = {"namespace": NAMESPACE, "labels": labels("kubeflow-pipelines", "bootstrap")}
        after_ns = pulumi.ResourceOptions(parent=self, depends_on=[ns])
        irs = {f"{m}.yaml": ir for m in models if (ir := committed_ir(m)) is not None}
        ir_map = k8s.core.v1.ConfigMap(f"{name}-ir", metadata={"name": IR_CONFIG, **meta}, data=irs, opts=after_ns)
        buckets = pulumi.Output.all(feast=data.buckets["feast"], models=data.buckets["models"])
        document = pulumi.Output.all(args.image, buckets).apply(lambda a: json.dumps(
            bootstrap_document(ctx, a[0], a[1], args.mlflow_tracking_uri), indent=1, sort_keys=True))
        config = k8s.core.v1.ConfigMap(f"{name}-bootstrap-config", metadata={"name": BOOTSTRAP_CONFIG, **meta},
                                       data={"bootstrap.json": document}, opts=after_ns)
        self.bootstrap_document = document
        digest = pulumi.Output.all(args.image, document).apply(
            lambda a: hashlib.sha256("\n".join([a[0], a[1], *sorted(irs.values())]).encode()).hexdigest()[:16])
        # No fixed name: a changed IR, document or image makes a new Job (Jobs are immutable), which runs again.
        k8s.batch.v1.Job(
            f"{name}-bootstrap", metadata=meta,
            spec={"backoffLimit": 4, "activeDeadlineSeconds": BOOTSTRAP_DEADLINE_S, "ttlSecondsAfterFinished": 86400,
                  "template": {
                      "metadata": {"labels": labels("kubeflow-pipelines", "bootstrap"),
                                   "annotations": {"mlplatform.io/bootstrap-sha256": digest}},
                      "spec": self._job_pod(ctx, args.image, [
                          "python", "-m", "ml.pipelines.kfp_api", "bootstrap", "--host", API_URL,
                          "--config", f"{BOOTSTRAP_DIR}/bootstrap.json", "--ir-dir", IR_DIR], restart="OnFailure")}},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[kfp, ir_map, config]))

    def _job_pod(self, ctx: StackContext, image: pulumi.Input[str], command: list[str],
                 restart: str = "Never") -> dict[str, Any]:
        return {
            "restartPolicy": restart, "automountServiceAccountToken": False,
            "securityContext": pod_security_context(), "nodeSelector": {NODE_ROLE_LABEL: "general"},
            "containers": [{
                "name": "main", "image": image, "command": command,
                "env": [{"name": "HOME", "value": "/tmp"}, {"name": "AWS_REGION", "value": ctx.cfg.region}],
                "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
                "securityContext": CONTAINER_SECURITY_CONTEXT,
                "volumeMounts": [{"name": "bootstrap", "mountPath": BOOTSTRAP_DIR, "readOnly": True},
                                 {"name": "ir", "mountPath": IR_DIR, "readOnly": True}, TMP_MOUNT],
            }],
            "volumes": [{"name": "bootstrap", "configMap": {"name": BOOTSTRAP_CONFIG}},
                        {"name": "ir", "configMap": {"name": IR_CONFIG}}, TMP_VOLUME],
        }

    def _retrain_receiver(self, name: str, ctx: StackContext, args: PipelinesArgs, kfp: pulumi.Resource,
                          ns: k8s.core.v1.Namespace) -> None:
        """ml/pipelines/retrain.py: Alertmanager posts the retrain alerts here; it starts the model's run."""
        cfg = ctx.cfg.workloads.pipelines
        selector = {"app.kubernetes.io/name": RETRAIN}
        meta = {"name": RETRAIN, "namespace": NAMESPACE, "labels": labels("kubeflow-pipelines", "retrain")}
        pod = self._job_pod(ctx, args.image, [
            "python", "-m", "ml.pipelines.retrain", "--mode", "kfp", "--host", API_URL, "--config",
            f"{BOOTSTRAP_DIR}/bootstrap.json", "--listen", "0.0.0.0", "--port", str(RETRAIN_PORT),
            "--cooldown-s", str(cfg.retrain_cooldown_minutes * 60), "--state-dir", "/tmp"], restart="Always")
        pod["containers"][0].update(
            ports=[{"name": "http", "containerPort": RETRAIN_PORT}],
            readinessProbe={"httpGet": {"path": "/healthz", "port": "http"}},
            livenessProbe={"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 30})
        k8s.apps.v1.Deployment(
            f"{name}-retrain", metadata=meta,
            spec={"replicas": 1, "strategy": {"type": "Recreate"},  # one receiver: one run per alert
                  "selector": {"matchLabels": selector},
                  "template": {"metadata": {"labels": {**labels("kubeflow-pipelines", "retrain"), **selector}},
                               "spec": pod}},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[kfp, ns]))
        k8s.core.v1.Service(
            f"{name}-retrain-service", metadata=meta,
            spec={"selector": selector, "ports": [{"name": "http", "port": RETRAIN_PORT, "targetPort": RETRAIN_PORT,
                                                   "protocol": "TCP"}]},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[ns]))


def retrain_receiver_url() -> str:
    """Where Alertmanager posts the retrain alerts (Alertmanager webhook format)."""
    return f"http://{RETRAIN}.{NAMESPACE}.svc.cluster.local:{RETRAIN_PORT}/alerts"
