"""The streaming job's configuration and operator arguments (no JVM: unit tests)."""

from __future__ import annotations

import pytest

from ml.models.fraud.streaming import flink_job

pytestmark = pytest.mark.flink


def test_settings_name_what_is_missing_or_wrong():
    with pytest.raises(ValueError, match="INPUT_DIR"):
        flink_job.Settings.from_env({"VELOCITY_SOURCE": "files", "REDIS_URL": "redis://x:1/0", "FEAST_PROJECT": "p"})
    with pytest.raises(ValueError, match="KAFKA_BOOTSTRAP, KAFKA_TOPIC"):
        flink_job.Settings.from_env({"REDIS_URL": "redis://x:1/0", "FEAST_PROJECT": "p"})
    with pytest.raises(ValueError, match="VELOCITY_SOURCE"):
        flink_job.Settings.from_env({"VELOCITY_SOURCE": "socket"})
    with pytest.raises(ValueError, match="ALLOWED_LATENESS_SECONDS"):
        flink_job.Settings.from_env({"VELOCITY_SOURCE": "files", "REDIS_URL": "r", "FEAST_PROJECT": "p",
                                     "INPUT_DIR": "/x", "ALLOWED_LATENESS_SECONDS": "soon"})


def test_velocity_function_refuses_a_nonsense_window():
    with pytest.raises(ValueError, match="window"):
        flink_job.VelocityFunction(0, 1000)
    with pytest.raises(ValueError, match="lateness"):
        flink_job.VelocityFunction(1000, -1)


def test_msk_source_authenticates_with_iam():
    assert flink_job.MSK_IAM_PROPERTIES["sasl.mechanism"] == "AWS_MSK_IAM"
    assert flink_job.MSK_IAM_PROPERTIES["security.protocol"] == "SASL_SSL"
