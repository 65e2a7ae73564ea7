"""Kubeflow Pipelines on the cluster, as synthesized for every stack (under mocks): the installation pinned
from the BOM, the S3 artifact store through IRSA (bucket policy scoped to the pipeline roles, trust of
exactly the KFP service accounts), the database switch, NetworkPolicies, monitors and alerts, the UI, the
compiled pipelines, one recurring run per model with the configured schedule, the first-install runs and
the retrain receiver with its Alertmanager route."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from contracts.cluster import WORKLOAD_IDENTITIES
from contracts.pipelines import ACTION_LABEL, DEPLOY_SECRET_DEFAULT, IR_FILE, RETRAIN_ACTION, cron_to_kfp, pipeline_name
from infra.aws.storage import OBJECT_ACCESS_ONLY
from infra.workloads import pipelines as kfp
from stacks.bom import load_bom
from stacks.config import load_stack_file, stack_file
from stacks.context import StackContext

REPO = Path(__file__).resolve().parents[2]
PIPELINE_IDENTITIES = ("pipelines", "pipeline-runner", "pipelines-ui")


def k8s(s, kind, name=None, namespace=kfp.NAMESPACE):
    return [r.inputs for r in s.resources if r.type.startswith("kubernetes:") and r.inputs.get("kind") == kind
            and (r.inputs.get("metadata") or {}).get("namespace") == namespace
            and (name is None or r.inputs["metadata"].get("name") == name)]


def one(s, kind, name, namespace=kfp.NAMESPACE):
    found = k8s(s, kind, name, namespace)
    assert len(found) == 1, (kind, name, len(found))
    return found[0]


def ctx(env):
    return StackContext(load_stack_file(stack_file(env)))


def test_installation_is_pinned_from_the_bom(synth, env):
    s, bom = synth(env), load_bom()
    directory = s.one("kubernetes:kustomize/v2:Directory")
    version = bom.manifests[kfp.MANIFESTS].version
    assert directory.inputs["namespace"] == "kubeflow"
    assert directory.inputs["directory"].startswith(f".cache/kustomize/{kfp.MANIFESTS}-{version}-")
    overlay = yaml.safe_load((REPO / directory.inputs["directory"] / "kustomization.yaml").read_text())
    assert overlay == kfp.kustomization(ctx(env))
    for resource in overlay["resources"]:
        assert resource.startswith(f"{bom.manifests[kfp.MANIFESTS].repository}/manifests/kustomize/")
        assert resource.endswith(f"?ref={version}")
    argo = next(r.inputs for r in s.of_type("kubernetes:helm.sh/v3:Release") if r.name == kfp.ARGO_RELEASE)
    assert (argo["chart"], argo["version"]) == ("argo-workflows", bom.charts["argo-workflows"].version)
    assert argo["namespace"] == "kubeflow" and argo["values"]["singleNamespace"] is True
    assert argo["values"]["server"]["enabled"] is False
    # The KFP install waits for its service accounts, configuration and Argo.
    deps = {s.by_urn(u).name for u in directory.dependencies}
    assert {"argo-workflows", "sa-pipelines", "sa-pipeline-runner", "sa-pipelines-ui",
            "pipelines-install-config", "pipelines-launcher"} <= deps


def test_artifacts_go_to_our_bucket_through_irsa(synth, env):
    s = synth(env)
    bucket = s.stack_outputs["buckets"]["pipelines"]
    roles = s.stack_outputs["workloadRoleArns"]
    install = one(s, "ConfigMap", "pipeline-install-config")["data"]
    launcher = one(s, "ConfigMap", "kfp-launcher")["data"]
    assert install["bucketName"] == bucket
    assert install["defaultPipelineRoot"] == launcher["defaultPipelineRoot"] == f"s3://{bucket}/pipeline-root"
    s3 = yaml.safe_load(launcher["providers"])["s3"]["default"]
    assert s3["credentials"] == {"fromEnv": True} and "secretRef" not in s3["credentials"]
    one(s, "Secret", "mlpipeline-minio-artifact")  # redacted in the plan; its keys are empty (next line)
    from inspect import getsource

    assert '"accesskey": "", "secretkey": ""' in getsource(kfp.Pipelines._configuration)  # IRSA, no static key
    for identity in PIPELINE_IDENTITIES:
        ident = WORKLOAD_IDENTITIES[identity]
        sa = one(s, "ServiceAccount", ident.service_account, ident.namespace)
        assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == roles[identity]
    argo = next(r.inputs for r in s.of_type("kubernetes:helm.sh/v3:Release") if r.name == kfp.ARGO_RELEASE)
    repo = argo["values"]["artifactRepository"]["s3"]
    assert repo["bucket"] == bucket and repo["useSDKCreds"] is True and "accessKeySecret" not in repo


def test_bucket_policy_is_scoped_to_the_pipeline_roles(synth, env):
    s = synth(env)
    bucket = s.stack_outputs["buckets"]["pipelines"]
    policy = next(r for r in s.of_type("aws:s3/bucketPolicy:BucketPolicy") if r.inputs["bucket"] == bucket)
    statements = json.loads(policy.inputs["policy"])["Statement"]
    scoped = next(st for st in statements if st["Sid"] == "DenyObjectAccessOutsideWorkloadRoles")
    assert scoped["Effect"] == "Deny" and scoped["Principal"] == "*"
    assert scoped["Resource"] == f"arn:aws:s3:::{bucket}/*"
    assert set(scoped["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]) == set(
        s.stack_outputs["workloadRoleArns"][i] for i in OBJECT_ACCESS_ONLY["pipelines"])
    # The other buckets carry no such statement (their readers are several workloads).
    for other in ("mlflow", "models"):
        doc = next(r for r in s.of_type("aws:s3/bucketPolicy:BucketPolicy")
                   if r.inputs["bucket"] == s.stack_outputs["buckets"][other]).inputs["policy"]
        assert "DenyObjectAccessOutsideWorkloadRoles" not in doc


def test_irsa_trust_admits_exactly_the_kfp_service_accounts(synth, env):
    s = synth(env)
    for identity in PIPELINE_IDENTITIES:
        ident = WORKLOAD_IDENTITIES[identity]
        role = next(r for r in s.of_type("aws:iam/role:Role") if r.name == f"{identity}-role")
        trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]
        subjects = [v for k, v in trust["Condition"]["StringEquals"].items() if k.endswith(":sub")]
        assert subjects == [f"system:serviceaccount:kubeflow:{ident.service_account}"]
        policy = next(r for r in s.of_type("aws:iam/rolePolicy:RolePolicy") if r.name == f"{identity}-policy")
        resources = [res for st in json.loads(policy.inputs["policy"])["Statement"]
                     for res in ([st["Resource"]] if isinstance(st["Resource"], str) else st["Resource"])]
        assert all("*" not in r.split(":::")[-1].split("/")[0] for r in resources if r.startswith("arn:aws:s3"))
    runner = next(r for r in s.of_type("aws:iam/rolePolicy:RolePolicy") if r.name == "pipeline-runner-policy")
    text = runner.inputs["policy"]
    assert s.stack_outputs["buckets"]["models"] in text  # publishes to the Seldon slots
    assert f'{s.stack_outputs["buckets"]["feast"]}/offline/*' in text  # writes the offline store, nothing else
    # Argo CD owns the Models (workloads.gitops): the steps may not patch them, and the runs do not ask to.
    assert not [r for r in s.of_type("kubernetes:rbac.authorization.k8s.io/v1:Role")
                if r.inputs["metadata"]["name"] == "pipeline-runner-publish"]
    assert kfp.run_parameters(ctx(env), {"models": "m", "feast": "f"}, "http://mlflow")["seldon_namespace"] == ""


def test_the_publish_step_gets_the_deploy_tree_only_with_credentials(env):
    """With `workloads.gitops.credentialsSecret` the runs carry the stack's tree (ml/delivery/tree_publish.py) and
    the Secret's name for the publish step's volume; without it the step writes no tree and mounts nothing named."""
    params = kfp.run_parameters(ctx(env), {"models": "m", "feast": "f"}, "http://mlflow")
    deploy = json.loads(params["deploy"])
    cfg = load_stack_file(stack_file(env))
    assert (deploy["environment"], deploy["bucket"], deploy["repoUrl"]) == (env, "m", cfg.workloads.gitops.repo_url)
    assert deploy["credentialsSecret"] == params["deploy_secret"] == "mlplat-deploy-git"
    assert [m["name"] for m in deploy["models"]] == [n for n in cfg.models.names() if cfg.models[n].enabled]
    none = cfg.model_copy(update={"workloads": cfg.workloads.model_copy(update={
        "gitops": cfg.workloads.gitops.model_copy(update={"credentials_secret": None})})})
    params = kfp.run_parameters(StackContext(none), {"models": "m", "feast": "f"}, "http://mlflow")
    assert params["deploy"] == "" and params["deploy_secret"] == DEPLOY_SECRET_DEFAULT


def test_database_follows_the_switch(synth, env):
    s, cfg = synth(env), load_stack_file(stack_file(env))
    managed = cfg.workloads.pipelines.database == "managed"
    assert managed == (env == "prod")
    overlay = kfp.kustomization(ctx(env))
    in_cluster_base = any(r.split("?")[0].endswith(kfp.IN_CLUSTER_DB_BASE) for r in overlay["resources"])
    assert in_cluster_base is not managed
    install = one(s, "ConfigMap", "pipeline-install-config")["data"]
    assert install["postgresHost"] == (kfp.DB_PROXY if managed else "postgres")
    proxies = k8s(s, "Deployment", kfp.DB_PROXY)
    assert len(proxies) == (1 if managed else 0)
    if managed:
        ini = one(s, "ConfigMap", kfp.DB_PROXY)["data"]["pgbouncer.ini"]
        assert f"host={s.stack_outputs['databaseEndpoint']}" in ini and "server_tls_sslmode = verify-full" in ini
        assert "server_tls_ca_file = /etc/ssl/rds/global-bundle.pem" in ini
        assert proxies[0]["spec"]["template"]["spec"]["containers"][0]["image"] == load_bom().images["pgbouncer"].ref
        assert k8s(s, "PodDisruptionBudget", kfp.DB_PROXY)


def test_pods_run_on_the_general_node_group(synth, env):
    overlay = kfp.kustomization(ctx(env))
    placement = next(p for p in overlay["patches"] if p.get("target") == {"kind": "Deployment"})
    assert yaml.safe_load(placement["patch"])[0]["value"] == {"mlplatform.io/node-role": "general"}
    s = synth(env)
    argo = next(r.inputs for r in s.of_type("kubernetes:helm.sh/v3:Release") if r.name == kfp.ARGO_RELEASE)
    assert argo["values"]["controller"]["nodeSelector"] == {"mlplatform.io/node-role": "general"}
    for name in ("pipelines-retrain",):
        assert one(s, "Deployment", name)["spec"]["template"]["spec"]["nodeSelector"] == {
            "mlplatform.io/node-role": "general"}
    # The steps' own placement is in the IR (general; the GPU group for a plugin with train_on_gpu).
    ir = yaml.safe_load_all((REPO / "ml/models/fraud" / IR_FILE).read_text())
    platform = list(ir)[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert all(e["nodeSelector"]["labels"] == {"mlplatform.io/node-role": "general"} for e in platform.values())


def test_network_policies_deny_by_default_with_explicit_allows(synth, env):
    s = synth(env)
    names = {p["metadata"]["name"]: p["spec"] for p in k8s(s, "NetworkPolicy")}
    assert names["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    egress = names["allow-egress"]["egress"]

    def peer(rule: dict) -> str:  # an address range, or the namespace whose Services and pods it admits
        to = rule["to"][0]
        return to["ipBlock"]["cidr"] if "ipBlock" in to else to["namespaceSelector"]["matchLabels"][
            "kubernetes.io/metadata.name"]

    ports = {(peer(rule), p["port"]) for rule in egress for p in rule["ports"]}
    vpc = str(load_stack_file(stack_file(env)).network.vpc_cidr)
    # The tracking server by namespace: the agent sees its Service's cluster IP, in no VPC range.
    assert ("0.0.0.0/0", 443) in ports and ("mlflow", 5000) in ports
    assert ((vpc, 5432) in ports) is (env == "prod")  # the managed database only
    ingress = names["allow-ingress"]["ingress"]
    assert any(p["port"] == kfp.RETRAIN_PORT for rule in ingress for p in rule.get("ports", []))
    mlflow = next(p for p in k8s(s, "NetworkPolicy", "allow-ingress", "mlflow"))
    allowed = {sel["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
               for rule in mlflow["spec"]["ingress"] for sel in rule["from"]}
    assert "kubeflow" in allowed


def test_monitors_alerts_and_the_retrain_route(synth, env):
    s = synth(env)
    monitors = {m["metadata"]["name"] for m in k8s(s, "ServiceMonitor")}
    assert {kfp.API_SERVICE, "workflow-controller"} <= monitors
    rules = one(s, "PrometheusRule", "mlplatform-pipelines", "monitoring")["spec"]["groups"]
    alerts = {r["alert"]: r for g in rules for r in g["rules"]}
    assert {"MLPlatPipelinesApiDown", "MLPlatPipelineStepsFailing"} <= set(alerts)
    models = [n for n in load_stack_file(stack_file(env)).models.names()]
    retrain = [r for g in rules for r in g["rules"] if r["labels"].get(ACTION_LABEL) == RETRAIN_ACTION]
    assert sorted(r["labels"]["model"] for r in retrain) == sorted(models)
    am = next(r.inputs for r in s.of_type("kubernetes:helm.sh/v3:Release")
              if r.name == "kube-prometheus-stack")["values"]["alertmanager"]["config"]
    route = next(r for r in am["route"]["routes"] if r["receiver"] == "model-retrain")
    assert route["matchers"] == [f'{ACTION_LABEL} = "{RETRAIN_ACTION}"']
    hook = next(r for r in am["receivers"] if r["name"] == "model-retrain")["webhook_configs"][0]["url"]
    assert hook == kfp.retrain_receiver_url()
    service = one(s, "Service", kfp.RETRAIN)
    assert service["spec"]["ports"][0]["port"] == kfp.RETRAIN_PORT


def test_ui_is_never_internet_facing(synth, env):
    s = synth(env)
    for svc in k8s(s, "Service"):
        if svc["spec"].get("type") == "LoadBalancer":
            assert svc["metadata"]["annotations"]["service.beta.kubernetes.io/aws-load-balancer-scheme"] == "internal"
    assert not k8s(s, "Service", kfp.UI_LB_SERVICE)  # portForward in the shipped stacks


def test_internal_load_balancer_variant():
    from infra.offline.synth import read_stack_config, synthesize

    config = read_stack_config(REPO / "stacks" / "Pulumi.staging.yaml")
    workloads = dict(config["mlplatform:workloads"])
    workloads["pipelines"] = {**workloads.get("pipelines", {}), "ui": "internalLoadBalancer"}
    s = synthesize("staging", config={**config, "mlplatform:workloads": workloads})
    svc = one(s, "Service", kfp.UI_LB_SERVICE)
    assert svc["spec"]["type"] == "LoadBalancer"
    assert svc["metadata"]["annotations"]["service.beta.kubernetes.io/aws-load-balancer-scheme"] == "internal"
    assert svc["spec"]["loadBalancerSourceRanges"] == [str(load_stack_file(stack_file("staging")).network.vpc_cidr)]
    allow = one(s, "NetworkPolicy", "allow-ui-from-vpc")["spec"]
    assert allow["ingress"][0]["ports"] == [{"protocol": "TCP", "port": kfp.UI_PORT}]


def test_compiled_pipelines_schedules_and_first_install_runs(synth, env):
    s = synth(env)
    cfg = load_stack_file(stack_file(env))
    enabled = [n for n in cfg.models.names() if cfg.models[n].enabled]
    irs = one(s, "ConfigMap", kfp.IR_CONFIG)["data"]
    assert sorted(irs) == sorted(f"{m}.yaml" for m in enabled)
    for m in enabled:
        assert irs[f"{m}.yaml"] == kfp.committed_ir(m)
        assert yaml.safe_load_all(irs[f"{m}.yaml"]).__next__()["pipelineInfo"]["name"] == pipeline_name(m)
    doc = json.loads(one(s, "ConfigMap", kfp.BOOTSTRAP_CONFIG)["data"]["bootstrap.json"])
    assert doc["image"].startswith(s.stack_outputs["modelServerRepositoryUrl"] + ":")
    assert doc["placeholderImage"] == load_bom().images["model-server"].ref
    for m in enabled:
        entry = doc["pipelines"][m]
        assert entry["schedule"] == cron_to_kfp(cfg.models[m].training_schedule)
        assert entry["firstInstall"] is cfg.workloads.pipelines.first_install_runs is True
        params = entry["parameters"]
        assert params["data_uri"] == "sample" and params["slot_bucket"] == s.stack_outputs["buckets"]["models"]
        assert params["promotion"] == cfg.governance.promotion
        assert params["tracking_uri"].startswith("http://mlflow.mlflow.svc")
    job = next(r for r in s.of_type("kubernetes:batch/v1:Job") if r.name == "pipelines-bootstrap")
    container = job.inputs["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][:4] == ["python", "-m", "ml.pipelines.kfp_api", "bootstrap"]
    assert {s.by_urn(u).name for u in job.dependencies} >= {"pipelines-kubeflow-pipelines", "pipelines-ir",
                                                            "pipelines-bootstrap-config"}


def test_schedule_comes_from_config():
    from infra.offline.synth import read_stack_config, synthesize

    config = read_stack_config(REPO / "stacks" / "Pulumi.dev.yaml")
    models = {k: dict(v) for k, v in (config.get("mlplatform:models") or {}).items()}
    first = load_stack_file(stack_file("dev")).models.names()[0]
    models[first] = {**models.get(first, {}), "trainingSchedule": "30 4 * * *"}
    models.setdefault(load_stack_file(stack_file("dev")).models.names()[1], {})["trainingSchedule"] = None
    s = synthesize("dev", config={**config, "mlplatform:models": models})
    doc = json.loads(one(s, "ConfigMap", kfp.BOOTSTRAP_CONFIG)["data"]["bootstrap.json"])
    assert doc["pipelines"][first]["schedule"] == "0 30 4 * * *"
    assert doc["pipelines"][load_stack_file(stack_file("dev")).models.names()[1]]["schedule"] is None


def test_pipelines_switched_off_declare_nothing():
    from infra.offline.synth import read_stack_config, synthesize

    config = read_stack_config(REPO / "stacks" / "Pulumi.dev.yaml")
    workloads = {**config.get("mlplatform:workloads", {}), "pipelines": {"enabled": False}}
    s = synthesize("dev", config={**config, "mlplatform:workloads": workloads})
    # (MLflow's ingress policy still names the namespace: admitting a namespace that does not exist is inert.)
    assert not [r for r in s.resources if "kubeflow" in json.dumps(r.inputs) and r.type.startswith("kubernetes:")
                and r.name != "netpol-mlflow-allow-ingress"]
    assert "pipelines" not in s.stack_outputs["buckets"]
    assert not set(PIPELINE_IDENTITIES) & set(s.stack_outputs["workloadRoleArns"])


@pytest.mark.parametrize("database", ["inCluster", "managed"])
def test_overlay_reads_against_the_mirrored_release(database, tmp_path):
    """The overlay's bases exist in the release's tree and every patch hits an object (offline structural
    read of the release's checked tree from the cache or the mirror, as `mlplat conform` reads it;
    without either this fails with the conformance tests' how-to, infra/conformance/kustomize.py)."""
    import os

    from infra.conformance import kustomize
    from infra.conformance.charts import ChartStore
    from infra.conformance.manifests import TreeStore, manifest_pins
    from stacks.schema import PlatformConfig

    mirror = Path(os.environ.get("MLPLAT_CHART_MIRROR") or REPO.parent / "shared" / "charts")
    version = load_bom().manifests[kfp.MANIFESTS].version

    base = load_stack_file(stack_file("dev"))
    cfg = PlatformConfig.model_validate({**base.model_dump(by_alias=True), "workloads": {
        **base.model_dump(by_alias=True)["workloads"], "pipelines": {"database": database}}})
    (tmp_path / "kustomization.yaml").write_text(kfp.overlay_text(StackContext(cfg)))
    pin = next(p for p in manifest_pins() if p.key == kfp.MANIFESTS)
    rendered = kustomize.render(tmp_path, TreeStore(ChartStore(mirror=mirror, online=False)).tree(pin), version)
    assert rendered.problems == []
    kinds = {(o.kind, o.manifest["metadata"]["name"]) for o in rendered.objects}
    assert ("Deployment", "ml-pipeline") in kinds and ("CustomResourceDefinition", "scheduledworkflows.kubeflow.org") \
        in kinds
    owned = {(kind, name) for _v, kind, name in kfp.OWNED}
    assert not owned & kinds  # declared by the program instead
    assert ("Deployment", "cache-deployer-deployment") not in kinds  # the v1 cache is left out
    assert (("Deployment", "postgres") in kinds) is (database == "inCluster")
    api = next(o.manifest for o in rendered.objects if (o.kind, o.manifest["metadata"]["name"]) ==
               ("Deployment", "ml-pipeline"))
    env = {e["name"]: e for e in api["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["OBJECTSTORECONFIG_SECURE"]["value"] == "true"
    assert env["OBJECTSTORECONFIG_HOST"]["value"] == "s3.eu-west-1.amazonaws.com"
    assert api["spec"]["template"]["spec"]["nodeSelector"] == {"mlplatform.io/node-role": "general"}
    if database == "managed":
        mlmd = next(o.manifest for o in rendered.objects
                    if o.manifest["metadata"]["name"] == "metadata-grpc-deployment")
        assert f"--postgres_config_host={kfp.DB_PROXY}" in mlmd["spec"]["template"]["spec"]["containers"][0]["args"]
