"""IAM permission sets of the two cluster controllers that manage AWS resources.

Read-only discovery calls (Describe*/List*/Get*) cannot be scoped by resource in IAM and use `*`;
every call that changes something is scoped by ARN pattern and/or by the ownership tag the
controller puts on what it creates, so neither controller can touch resources of another cluster
or of other tools.
"""

from __future__ import annotations

from typing import Any

# Tag the load balancer controller sets on every resource it creates.
LBC_CLUSTER_TAG = "elbv2.k8s.aws/cluster"


def cluster_autoscaler_statements(region: str, account_id: str, cluster_name: str) -> list[dict[str, Any]]:
    """Scale only the Auto Scaling groups EKS tagged as owned by this cluster."""
    return [
        {"Sid": "Discover", "Effect": "Allow", "Resource": "*", "Action": [
            "autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeAutoScalingInstances",
            "autoscaling:DescribeLaunchConfigurations", "autoscaling:DescribeScalingActivities",
            "autoscaling:DescribeTags", "ec2:DescribeImages", "ec2:DescribeInstanceTypes",
            "ec2:DescribeLaunchTemplateVersions", "ec2:GetInstanceTypesFromInstanceRequirements",
        ]},
        {"Sid": "DescribeOwnNodegroups", "Effect": "Allow", "Action": "eks:DescribeNodegroup",
         "Resource": f"arn:aws:eks:{region}:{account_id}:nodegroup/{cluster_name}/*/*"},
        {"Sid": "ScaleOwnGroups", "Effect": "Allow", "Resource": "*",
         "Action": ["autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"],
         "Condition": {"StringEquals": {f"aws:ResourceTag/k8s.io/cluster-autoscaler/{cluster_name}": "owned"}}},
    ]


def load_balancer_controller_statements(region: str, account_id: str) -> list[dict[str, Any]]:
    """aws-load-balancer-controller: create LBs/target groups tagged for a cluster, change only those."""
    elb = f"arn:aws:elasticloadbalancing:{region}:{account_id}"
    security_groups = f"arn:aws:ec2:{region}:{account_id}:security-group/*"
    lb_and_tg = [f"{elb}:targetgroup/*/*", f"{elb}:loadbalancer/net/*/*", f"{elb}:loadbalancer/app/*/*"]
    listeners = [f"{elb}:listener/net/*/*/*", f"{elb}:listener/app/*/*/*",
                 f"{elb}:listener-rule/net/*/*/*", f"{elb}:listener-rule/app/*/*/*"]
    owned = {"Null": {f"aws:ResourceTag/{LBC_CLUSTER_TAG}": "false"}}
    requested = {"Null": {f"aws:RequestTag/{LBC_CLUSTER_TAG}": "false"}}
    return [
        {"Sid": "ElbServiceLinkedRole", "Effect": "Allow", "Action": "iam:CreateServiceLinkedRole", "Resource": "*",
         "Condition": {"StringEquals": {"iam:AWSServiceName": "elasticloadbalancing.amazonaws.com"}}},
        {"Sid": "Discover", "Effect": "Allow", "Resource": "*", "Action": [
            "ec2:DescribeAccountAttributes", "ec2:DescribeAddresses", "ec2:DescribeAvailabilityZones",
            "ec2:DescribeInternetGateways", "ec2:DescribeVpcs", "ec2:DescribeVpcPeeringConnections",
            "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups", "ec2:DescribeInstances",
            "ec2:DescribeNetworkInterfaces", "ec2:DescribeTags", "ec2:DescribeRouteTables",
            "ec2:GetCoipPoolUsage", "ec2:DescribeCoipPools", "ec2:GetSecurityGroupsForVpc", "ec2:DescribeIpamPools",
            "elasticloadbalancing:DescribeLoadBalancers", "elasticloadbalancing:DescribeLoadBalancerAttributes",
            "elasticloadbalancing:DescribeListeners", "elasticloadbalancing:DescribeListenerCertificates",
            "elasticloadbalancing:DescribeListenerAttributes", "elasticloadbalancing:DescribeSSLPolicies",
            "elasticloadbalancing:DescribeRules", "elasticloadbalancing:DescribeTargetGroups",
            "elasticloadbalancing:DescribeTargetGroupAttributes", "elasticloadbalancing:DescribeTargetHealth",
            "elasticloadbalancing:DescribeTags", "elasticloadbalancing:DescribeTrustStores",
            "elasticloadbalancing:DescribeCapacityReservation",
        ]},
        {"Sid": "FrontendIntegrations", "Effect": "Allow", "Resource": "*", "Action": [
            "acm:ListCertificates", "acm:DescribeCertificate", "cognito-idp:DescribeUserPoolClient",
            "iam:ListServerCertificates", "iam:GetServerCertificate",
            "wafv2:GetWebACL", "wafv2:GetWebACLForResource", "wafv2:AssociateWebACL", "wafv2:DisassociateWebACL",
            "shield:GetSubscriptionState", "shield:DescribeProtection", "shield:CreateProtection",
            "shield:DeleteProtection",
        ]},
        # Node security groups must admit traffic from the load balancers the controller creates.
        {"Sid": "OpenNodeSecurityGroups", "Effect": "Allow", "Resource": security_groups,
         "Action": ["ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress"]},
        {"Sid": "CreateSecurityGroup", "Effect": "Allow", "Action": "ec2:CreateSecurityGroup",
         "Resource": [security_groups, f"arn:aws:ec2:{region}:{account_id}:vpc/*"]},
        {"Sid": "TagSecurityGroupOnCreate", "Effect": "Allow", "Action": "ec2:CreateTags", "Resource": security_groups,
         "Condition": {"StringEquals": {"ec2:CreateAction": "CreateSecurityGroup"}, **requested}},
        {"Sid": "RetagOwnSecurityGroups", "Effect": "Allow", "Action": ["ec2:CreateTags", "ec2:DeleteTags"],
         "Resource": security_groups,
         "Condition": {"Null": {f"aws:RequestTag/{LBC_CLUSTER_TAG}": "true",
                                f"aws:ResourceTag/{LBC_CLUSTER_TAG}": "false"}}},
        {"Sid": "DeleteOwnSecurityGroups", "Effect": "Allow", "Action": "ec2:DeleteSecurityGroup",
         "Resource": security_groups, "Condition": owned},
        {"Sid": "CreateTaggedLoadBalancers", "Effect": "Allow", "Resource": "*", "Condition": requested,
         "Action": ["elasticloadbalancing:CreateLoadBalancer", "elasticloadbalancing:CreateTargetGroup"]},
        {"Sid": "TagOnCreate", "Effect": "Allow", "Action": "elasticloadbalancing:AddTags", "Resource": lb_and_tg,
         "Condition": {"StringEquals": {"elasticloadbalancing:CreateAction": [
             "CreateTargetGroup", "CreateLoadBalancer"]}, **requested}},
        {"Sid": "RetagOwnLoadBalancers", "Effect": "Allow", "Resource": lb_and_tg,
         "Action": ["elasticloadbalancing:AddTags", "elasticloadbalancing:RemoveTags"],
         "Condition": {"Null": {f"aws:RequestTag/{LBC_CLUSTER_TAG}": "true",
                                f"aws:ResourceTag/{LBC_CLUSTER_TAG}": "false"}}},
        {"Sid": "TagListeners", "Effect": "Allow", "Resource": listeners,
         "Action": ["elasticloadbalancing:AddTags", "elasticloadbalancing:RemoveTags"]},
        {"Sid": "ManageOwnLoadBalancers", "Effect": "Allow", "Resource": "*", "Condition": owned, "Action": [
            "elasticloadbalancing:ModifyLoadBalancerAttributes", "elasticloadbalancing:SetIpAddressType",
            "elasticloadbalancing:SetSecurityGroups", "elasticloadbalancing:SetSubnets",
            "elasticloadbalancing:DeleteLoadBalancer", "elasticloadbalancing:ModifyTargetGroup",
            "elasticloadbalancing:ModifyTargetGroupAttributes", "elasticloadbalancing:DeleteTargetGroup",
            "elasticloadbalancing:ModifyListenerAttributes", "elasticloadbalancing:ModifyCapacityReservation",
            "elasticloadbalancing:ModifyIpPools",
        ]},
        {"Sid": "Targets", "Effect": "Allow", "Resource": f"{elb}:targetgroup/*/*",
         "Action": ["elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets"]},
        # Listeners and rules carry no cluster tag of their own; they belong to a tagged load balancer.
        {"Sid": "ListenersAndRules", "Effect": "Allow", "Resource": [*listeners, *lb_and_tg[1:]], "Action": [
            "elasticloadbalancing:CreateListener", "elasticloadbalancing:DeleteListener",
            "elasticloadbalancing:CreateRule", "elasticloadbalancing:DeleteRule",
            "elasticloadbalancing:SetWebAcl", "elasticloadbalancing:ModifyListener",
            "elasticloadbalancing:AddListenerCertificates", "elasticloadbalancing:RemoveListenerCertificates",
            "elasticloadbalancing:ModifyRule", "elasticloadbalancing:SetRulePriorities",
        ]},
    ]
