"""AWS creation order: walk the plan as the engine creates it (infra/conformance/aws_graph.py) and check,
at each step, what AWS documents as a precondition or a refusal.

Sources (Amazon EKS User Guide, awsdocs/amazon-eks-user-guide, doc_source/):

- launch-templates.md, "Customizing managed nodes with launch templates": settings a launch template of a
  managed node group must not carry (subnet of a network interface, IAM instance profile, shutdown and
  hibernation behaviour), settings that must not be in both the template and the node group (instance
  type, disk size, remote access; AMI type, release version and version when the template names an
  AMI), security groups either on the instance or on the network interfaces, and user data: a MIME
  multi-part archive for Amazon Linux AMIs, TOML for Bottlerocket, merged by EKS unless the template
  names an AMI, when the user data must bootstrap the node itself.
- create-node-role.md, "Amazon EKS node IAM role": before nodes are created their role needs
  AmazonEKSWorkerNodePolicy and AmazonEC2ContainerRegistryReadOnly (or the narrower
  AmazonEC2ContainerRegistryPullOnly), and AmazonEKS_CNI_Policy must be on that role or on the role of
  the `aws-node` service account (cni-iam-role.md). A node whose `aws-node` cannot call EC2 gets no pod
  network, stays NotReady, and CreateNodegroup fails ("Instances failed to join the kubernetes cluster").
- access-entries.md: EKS creates the access entry (or aws-auth row) of a managed node group's role itself;
  an access entry the program makes for that role must be of type EC2_LINUX, never STANDARD.
- add-ons-coredns.md and add-ons-aws-ebs-csi-driver.md: CoreDNS and the EBS CSI controller are
  Deployments; without a node they never become ready and the add-on stays DEGRADED, so its creation
  times out. terraform-aws-modules/terraform-aws-eks (`before_compute`) orders vpc-cni before the node
  groups for the reason above.
- aws-load-balancer-controller.md and the controller's chart (aws-load-balancer-controller 3.5.0,
  templates/webhook.yaml: the Service and Ingress webhooks fail closed): Services of type LoadBalancer
  and Ingresses need the controller running first; subnets are found by their kubernetes.io/role/elb
  (public) and kubernetes.io/role/internal-elb (private) tags.
- cluster-iam-role.md: CreateCluster needs AmazonEKSClusterPolicy on the cluster role; the same holds for
  every role handed to an AWS service (VPC flow logs deliver with theirs from the start: VPC User
  Guide, flow-logs-iam-role.html): its policies exist before the resource that hands it over.
- launch-templates.md (note on the metadata hop limit): with a hop limit of 1 pods cannot reach IMDSv2,
  so the load balancer controller must be given its VPC and region (its chart's `vpcId`, `region`).
- Amazon MSK Developer Guide, msk-topic-operations-information.html: the topic API (`aws.msk.Topic`)
  needs a provisioned cluster on Kafka 3.6.0 or later in state ACTIVE.
- IAM roles for service accounts (iam-roles-for-service-accounts.md): a pod gets the role's permissions
  only once the role's policies exist; the role's grants must exist before the add-on or release whose
  pods assume it.
"""

from __future__ import annotations

import email.parser
import tomllib

from infra.conformance.aws_graph import (
    ACCESS_ENTRY,
    ADDON,
    EKS_CLUSTER,
    LAUNCH_TEMPLATE,
    NODE_GROUP,
    ROLE,
    SUBNET,
    AwsGraph,
    Node,
    decoded_user_data,
    is_irsa,
    trusts_service,
)
from infra.conformance.model import KubeObject, Problem

CHECK = "aws-order"
SERVICE_ACCOUNT = "kubernetes:core/v1:ServiceAccount"
MSK_TOPIC = "aws:msk/topic:Topic"
MSK_CLUSTER = "aws:msk/cluster:Cluster"
POLICY = "arn:aws:iam::aws:policy/"
WORKER_NODE = POLICY + "AmazonEKSWorkerNodePolicy"
ECR_PULL = (POLICY + "AmazonEC2ContainerRegistryReadOnly", POLICY + "AmazonEC2ContainerRegistryPullOnly")
CNI = POLICY + "AmazonEKS_CNI_Policy"
ADDONS_NEEDING_NODES = ("coredns", "aws-ebs-csi-driver")
LB_CONTROLLER_CHART = "aws-load-balancer-controller"
# Launch-template fields EKS refuses for a managed node group (launch-templates.md, first table).
PROHIBITED_IN_TEMPLATE = {
    "iamInstanceProfile": "the node IAM role is set on the node group (nodeRoleArn)",
    "instanceInitiatedShutdownBehavior": "EKS controls the instance lifecycle",
    "hibernationOptions": "EKS controls the instance lifecycle",
}


def _problem(node: Node, field: str, message: str) -> Problem:
    return Problem(CHECK, f"{node.ref} .{field}", message)


def launch_template_problems(graph: AwsGraph) -> list[Problem]:
    problems: list[Problem] = []
    for group in graph.of_type(NODE_GROUP):
        templates = graph.direct(group, LAUNCH_TEMPLATE)
        if not group.inputs.get("launchTemplate") or not templates:
            continue
        lt = templates[0]
        for field, why in PROHIBITED_IN_TEMPLATE.items():
            if lt.inputs.get(field):
                problems.append(_problem(lt, field, f"EKS refuses it in a managed node group's launch template: {why}"))
        interfaces = lt.inputs.get("networkInterfaces") or []
        for i, nic in enumerate(interfaces):
            if nic.get("subnetId"):
                problems.append(_problem(lt, f"networkInterfaces[{i}].subnetId",
                                         "EKS refuses a subnet in the launch template; subnets are the node group's"))
        if lt.inputs.get("vpcSecurityGroupIds") and any(nic.get("securityGroups") for nic in interfaces):
            problems.append(_problem(lt, "vpcSecurityGroupIds",
                                     "security groups on the instance and on a network interface: EKS allows one"))
        custom_groups = lt.inputs.get("vpcSecurityGroupIds") or [g for nic in interfaces
                                                                  for g in nic.get("securityGroups") or []]
        if custom_groups and not graph.direct(lt, EKS_CLUSTER):
            problems.append(_problem(lt, "vpcSecurityGroupIds", "custom security groups replace the cluster "
                                     "security group on the nodes; none of them is the cluster's "
                                     "(vpcConfig.clusterSecurityGroupId), so the nodes cannot reach the control plane"))
        if lt.inputs.get("instanceType") and group.inputs.get("instanceTypes"):
            problems.append(_problem(group, "instanceTypes",
                                     f"the launch template {lt.name} names an instance type too: set it in one place"))
        for field in ("diskSize", "remoteAccess"):
            if group.inputs.get(field):
                problems.append(_problem(group, field, f"not allowed with a launch template ({lt.name}): set "
                                                       "the volume or key pair in the template"))
        image = lt.inputs.get("imageId")
        if image:
            for field in ("amiType", "releaseVersion", "version"):
                if group.inputs.get(field):
                    problems.append(_problem(group, field, f"the launch template {lt.name} names an AMI; EKS "
                                                           "refuses this field then"))
        problems.extend(_user_data_problems(group, lt, bool(image)))
    return problems


def _user_data_problems(group: Node, lt: Node, custom_ami: bool) -> list[Problem]:
    text = decoded_user_data(lt)
    if text is None:
        return [_problem(lt, "userData", "the template names an AMI, so EKS merges no user data: the nodes "
                                         "need their own bootstrap or never join")] if custom_ami else []
    if custom_ami:
        return []
    ami_type = str(group.inputs.get("amiType") or "AL2023_x86_64_STANDARD")
    if ami_type.startswith("BOTTLEROCKET"):
        try:
            tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            return [_problem(lt, "userData", f"Bottlerocket user data must be TOML (EKS merges it): {exc}")]
        return []
    message = email.parser.Parser().parsestr(text)
    if message.get("MIME-Version") is None or not message.is_multipart():
        return [_problem(lt, "userData", f"user data of a managed node group on {ami_type} must be a MIME "
                                         "multi-part archive (EKS merges its own bootstrap into it); "
                                         "CreateNodegroup fails otherwise")]
    return []


def _node_role(graph: AwsGraph, group: Node) -> Node | None:
    roles = [r for r in graph.direct(group, ROLE) if trusts_service(r, "ec2.amazonaws.com")]
    return roles[0] if roles else None


def _irsa_role(graph: AwsGraph, consumer: Node) -> Node | None:
    roles = [r for r in graph.direct(consumer, ROLE) if is_irsa(r)]
    return roles[0] if roles else None


def node_join_problems(graph: AwsGraph) -> list[Problem]:
    problems: list[Problem] = []
    cni_addons = [a for a in graph.of_type(ADDON) if a.inputs.get("addonName") == "vpc-cni"]
    for group in graph.of_type(NODE_GROUP):
        role = _node_role(graph, group)
        if role is None:
            problems.append(_problem(group, "nodeRoleArn", "no role trusted by ec2.amazonaws.com in the plan"))
            continue
        attached = graph.managed_policies(role, before=group.urn)
        if WORKER_NODE not in attached:
            problems.append(_problem(group, "nodeRoleArn", f"role {role.name} has no AmazonEKSWorkerNodePolicy "
                                                           "attached before the nodes join"))
        if not attached.intersection(ECR_PULL):
            problems.append(_problem(group, "nodeRoleArn", f"role {role.name} cannot pull images from ECR when "
                                                           "the nodes join (AmazonEC2ContainerRegistryReadOnly or "
                                                           "PullOnly attached before the node group)"))
        if CNI in attached:
            continue
        ready = [a for a in cni_addons if graph.created_before(a.urn, group.urn)
                 and (irsa := _irsa_role(graph, a)) is not None and CNI in graph.managed_policies(irsa, group.urn)]
        if not ready:
            later = ", ".join(a.name for a in cni_addons) or "none"
            problems.append(_problem(group, "nodeRoleArn",
                                     f"aws-node has no AmazonEKS_CNI_Policy when the nodes join: not on role "
                                     f"{role.name}, and no vpc-cni add-on with an IRSA role holding it is created "
                                     f"before the node group (vpc-cni add-ons: {later}); the nodes stay NotReady"))
    # Without EKS's self-managed networking add-ons (CreateCluster bootstrapSelfManagedAddons=false, EKS API
    # reference), a joining node has no kube-proxy unless the managed add-on exists first.
    if any(c.inputs.get("bootstrapSelfManagedAddons") is False for c in graph.of_type(EKS_CLUSTER)):
        proxies = [a for a in graph.of_type(ADDON) if a.inputs.get("addonName") == "kube-proxy"]
        for group in graph.of_type(NODE_GROUP):
            if not any(graph.created_before(a.urn, group.urn) for a in proxies):
                problems.append(_problem(group, "clusterName", "the cluster has no self-managed kube-proxy and no "
                                                               "kube-proxy add-on is created before this node group"))
    for entry in graph.of_type(ACCESS_ENTRY):
        for group in graph.of_type(NODE_GROUP):
            role = _node_role(graph, group)
            if role is not None and role.urn in entry.dependencies and entry.inputs.get("type") != "EC2_LINUX":
                problems.append(_problem(entry, "type", f"access entry of node role {role.name} must be EC2_LINUX "
                                                        f"(EKS makes it for managed node groups), got "
                                                        f"{entry.inputs.get('type') or 'STANDARD'}"))
    return problems


def addon_problems(graph: AwsGraph) -> list[Problem]:
    problems: list[Problem] = []
    groups = graph.of_type(NODE_GROUP)
    for addon in graph.of_type(ADDON):
        name = str(addon.inputs.get("addonName"))
        if name in ADDONS_NEEDING_NODES and not any(graph.created_before(g.urn, addon.urn) for g in groups):
            problems.append(_problem(addon, "addonName", f"{name} runs a Deployment: created before any node "
                                                         "group, the add-on stays DEGRADED and its creation times out"))
        problems.extend(_grants_before(graph, addon, "serviceAccountRoleArn"))
    return problems


def _grants_before(graph: AwsGraph, consumer: Node, field: str) -> list[Problem]:
    """The IRSA role `consumer` hands to its pods has its permissions before the consumer is created."""
    role = _irsa_role(graph, consumer)
    if role is None:
        return []
    grants = graph.grants_of(role)
    if not grants:
        return [_problem(consumer, field, f"IRSA role {role.name} has no policy at all")]
    late = [g.name for g in grants if not graph.created_before(g.urn, consumer.urn)]
    if late:
        return [_problem(consumer, field, f"the pods assume IRSA role {role.name} before its grants "
                                          f"{', '.join(sorted(late))} exist (depend on the whole role)")]
    return []


def release_problems(graph: AwsGraph, objects: list[KubeObject]) -> list[Problem]:
    problems: list[Problem] = []
    groups = graph.of_type(NODE_GROUP)
    for release in graph.releases:
        if groups and not any(graph.created_before(g.urn, release.urn) for g in groups):
            problems.append(_problem(release, "chart", "a Helm release waits for its pods, but no node group is "
                                                       "created before it"))
        problems.extend(_grants_before(graph, release, "values"))
    for account in graph.of_type(SERVICE_ACCOUNT):
        problems.extend(_grants_before(graph, account, "metadata.annotations"))
    controllers = [r for r in graph.releases if r.inputs.get("chart") == LB_CONTROLLER_CHART]
    balanced = [o for o in objects if not o.derived and o.urn and (
        o.kind == "Ingress" or (o.kind == "Service" and (o.manifest.get("spec") or {}).get("type") == "LoadBalancer"))]
    for obj in balanced:
        waits = obj.urn is not None and any(graph.created_before(c.urn, obj.urn) or c.urn == obj.urn
                                            for c in controllers)
        if not waits:
            problems.append(Problem(CHECK, f"{obj.where} .spec", "needs aws-load-balancer-controller running "
                                    "(its webhooks fail closed and it provisions the load balancer), but is not "
                                    "created after that release", obj.release))
    if controllers:
        tags = [dict(s.inputs.get("tags") or {}) for s in graph.of_type(SUBNET)]
        for tag in ("kubernetes.io/role/elb", "kubernetes.io/role/internal-elb"):
            if not any(t.get(tag) == "1" for t in tags):
                problems.append(_problem(controllers[0], "values", f"no subnet is tagged {tag}=1: the controller "
                                                                   "finds no subnet for such load balancers"))
    return problems


def service_role_problems(graph: AwsGraph) -> list[Problem]:
    """A role handed to an AWS service (EKS, VPC flow logs, RDS monitoring, ...) has its policies when the
    service first uses it: CreateCluster needs AmazonEKSClusterPolicy on the cluster role
    (cluster-iam-role.md), a flow log needs its delivery permissions (VPC User Guide, flow-logs-cwl.html)."""
    problems: list[Problem] = []
    for node in graph.nodes.values():
        if not node.custom or node.type.startswith("aws:iam/") or node.type == NODE_GROUP:
            continue
        for role in graph.direct(node, ROLE):
            if is_irsa(role):
                continue
            late = sorted(g.name for g in graph.grants_of(role) if not graph.created_before(g.urn, node.urn))
            if late:
                problems.append(_problem(node, "roleArn", f"uses role {role.name} before its grants "
                                                          f"{', '.join(late)} exist (depend on them)"))
    return problems


def imds_problems(graph: AwsGraph) -> list[Problem]:
    """With a metadata hop limit of 1 (launch-templates.md: containers need 2 to reach IMDSv2), the load
    balancer controller cannot discover its VPC and region and must be given both."""
    hop_one = [lt for lt in graph.of_type(LAUNCH_TEMPLATE)
               if (lt.inputs.get("metadataOptions") or {}).get("httpPutResponseHopLimit") == 1]
    if not hop_one:
        return []
    return [_problem(r, f"values.{key}", f"pods cannot reach instance metadata (hop limit 1 in {hop_one[0].name}): "
                                         "the controller needs it set")
            for r in graph.releases if r.inputs.get("chart") == LB_CONTROLLER_CHART
            for key in ("vpcId", "region") if not (r.inputs.get("values") or {}).get(key)]


def topic_problems(graph: AwsGraph) -> list[Problem]:
    """MSK's topic API works only on a provisioned cluster running Kafka 3.6.0 or later, once it is ACTIVE
    (Amazon MSK Developer Guide, msk-topic-operations-information.html), and a topic cannot have more
    replicas than brokers."""
    problems: list[Problem] = []
    for topic in graph.of_type(MSK_TOPIC):
        clusters = graph.direct(topic, MSK_CLUSTER)
        if not clusters:
            problems.append(_problem(topic, "clusterArn", "not created after a provisioned MSK cluster of the plan"))
            continue
        cluster = clusters[0]
        version = str(cluster.inputs.get("kafkaVersion", ""))
        parts = [int(p) for p in version.split(".")[:2] if p.isdigit()]
        if len(parts) < 2 or tuple(parts) < (3, 6):
            problems.append(_problem(topic, "clusterArn", f"the topic API needs Kafka 3.6.0 or later; cluster "
                                                          f"{cluster.name} runs {version or 'an unknown version'}"))
        brokers = cluster.inputs.get("numberOfBrokerNodes") or 0
        if (topic.inputs.get("replicationFactor") or 0) > brokers:
            problems.append(_problem(topic, "replicationFactor", f"{topic.inputs.get('replicationFactor'):g} "
                                                                 f"replicas on {brokers:g} brokers"))
    return problems


def check(graph: AwsGraph, objects: list[KubeObject]) -> list[Problem]:
    return (launch_template_problems(graph) + node_join_problems(graph) + addon_problems(graph)
            + release_problems(graph, objects) + service_role_problems(graph) + imds_problems(graph)
            + topic_problems(graph))
