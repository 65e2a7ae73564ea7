"""RDS PostgreSQL: the MLflow backend store.

Private (isolated subnets, node-only security group, never publicly accessible), encrypted with
the database KMS key (storage and Performance Insights), SSL forced by the parameter group, gp3
storage with auto-scaling. The master password is generated and kept in Secrets Manager in the
format of the RDS rotation functions (engine/host/port/dbname/username/password), so the rotation
runbook can work from the secret alone. Multi-AZ, backups, deletion protection and a final snapshot
follow the environment's config; logs go to CloudWatch with a retention.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.aws.data_common import StoredSecret, generated_password, node_only_security_group, stateful_options
from stacks.context import StackContext

POSTGRES_PORT = 5432
DATABASE = "mlflow"
USERNAME = "mlflow"
LOG_EXPORTS = ["postgresql", "upgrade"]
PARAMETERS = {
    "rds.force_ssl": "1",
    "log_min_duration_statement": "1000",  # log statements slower than 1 s
    "password_encryption": "scram-sha-256",
}


@dataclass(frozen=True, kw_only=True)
class DatabaseArgs:
    """Inputs of `Database`."""

    ctx: StackContext
    vpc_id: pulumi.Input[str]
    subnet_ids: list[pulumi.Output[str]]
    """Isolated subnets, one per zone (the DB subnet group)."""
    node_sg_id: pulumi.Input[str]
    """Security group of the EKS nodes: the only source admitted on the PostgreSQL port."""
    kms_key_arn: pulumi.Input[str]
    """The database KMS key (storage and Performance Insights)."""
    secrets_key_arn: pulumi.Input[str]
    """The secrets KMS key of the master-user secret."""


class Database(pulumi.ComponentResource):
    host: pulumi.Output[str]
    port: int
    database: str
    username: str
    password: pulumi.Output[str]  # secret
    secret_arn: pulumi.Output[str]
    identifier: str

    def __init__(self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlplatform:data:Database", name, None, opts)
        ctx, vpc_id, subnet_ids = args.ctx, args.vpc_id, args.subnet_ids
        node_sg_id, kms_key_arn, secrets_key_arn = args.node_sg_id, args.kms_key_arn, args.secrets_key_arn
        dc = ctx.cfg.database
        child = pulumi.ResourceOptions(parent=self)
        self.identifier = ctx.database_identifier
        self.port, self.database, self.username = POSTGRES_PORT, DATABASE, USERNAME

        sg = node_only_security_group(f"{name}-sg", ctx, vpc_id, node_sg_id,
                                      [(POSTGRES_PORT, POSTGRES_PORT, "PostgreSQL from EKS nodes")], "postgres", self)
        subnets = aws.rds.SubnetGroup(
            f"{name}-subnets", name=ctx.name("postgres"), description="Isolated subnets for PostgreSQL",
            subnet_ids=subnet_ids, tags=ctx.tags(ctx.name("postgres")), opts=child,
        )
        params = aws.rds.ParameterGroup(
            f"{name}-params", name=ctx.name("postgres"), family=ctx.bom.engines["postgresParameterFamily"],
            description="MLflow backend store: SSL only",
            parameters=[aws.rds.ParameterGroupParameterArgs(name=k, value=v) for k, v in PARAMETERS.items()],
            tags=ctx.tags(ctx.name("postgres")), opts=child,
        )
        # Created ahead of the instance so that the retention applies (RDS would create them unbounded).
        log_groups = [
            aws.cloudwatch.LogGroup(
                f"{name}-{log}-logs", name=f"/aws/rds/instance/{self.identifier}/{log}",
                retention_in_days=dc.log_retention_days, tags=ctx.tags(ctx.name("postgres", log)), opts=child,
            )
            for log in LOG_EXPORTS
        ]
        password = generated_password(f"{name}-master-password", 40, self)
        keep_final_snapshot = dc.final_snapshot
        instance = aws.rds.Instance(
            f"{name}-instance",
            identifier=self.identifier,
            engine="postgres",
            engine_version=ctx.bom.engines["postgres"],
            instance_class=dc.instance_class,
            allocated_storage=dc.allocated_storage_gib,
            max_allocated_storage=dc.max_allocated_storage_gib,
            storage_type="gp3",
            storage_encrypted=True,
            kms_key_id=kms_key_arn,
            db_name=DATABASE,
            username=USERNAME,
            password=password.result,
            port=POSTGRES_PORT,
            db_subnet_group_name=subnets.name,
            vpc_security_group_ids=[sg.id],
            parameter_group_name=params.name,
            publicly_accessible=False,
            multi_az=dc.multi_az,
            backup_retention_period=dc.backup_retention_days,
            backup_window=dc.backup_window,
            maintenance_window=dc.maintenance_window,
            copy_tags_to_snapshot=True,
            deletion_protection=dc.deletion_protection,
            skip_final_snapshot=not keep_final_snapshot,
            final_snapshot_identifier=f"{self.identifier}-final" if keep_final_snapshot else None,
            delete_automated_backups=dc.delete_automated_backups,
            performance_insights_enabled=dc.performance_insights,
            performance_insights_kms_key_id=kms_key_arn if dc.performance_insights else None,
            performance_insights_retention_period=7 if dc.performance_insights else None,
            enabled_cloudwatch_logs_exports=LOG_EXPORTS,
            auto_minor_version_upgrade=True,
            allow_major_version_upgrade=False,
            apply_immediately=dc.apply_immediately,
            tags=ctx.tags(self.identifier),
            # Storage autoscaling raises allocated storage up to the ceiling; RDS cannot shrink it back.
            opts=stateful_options(ctx, self, depends_on=log_groups, ignore_changes=["allocatedStorage"]),
        )
        self.host = instance.address
        self.password = pulumi.Output.secret(password.result)
        self.secret_arn = StoredSecret(
            f"{name}-master-secret", ctx, ctx.database_secret_name, "MLflow backend store master user",
            secrets_key_arn,
            {"engine": "postgres", "host": instance.address, "port": POSTGRES_PORT, "dbname": DATABASE,
             "username": USERNAME, "password": password.result, "dbInstanceIdentifier": self.identifier},
            self,
        ).arn
        self.register_outputs({"host": self.host, "port": POSTGRES_PORT, "secretArn": self.secret_arn})
