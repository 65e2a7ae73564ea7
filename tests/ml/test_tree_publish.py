"""The pipeline's publish step and the runbooks write the deploy tree (ml/delivery/tree_publish.py): the `deploy`
run parameter, the mounted credentials turned into git's environment, and named errors. No subprocess here."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from ml.delivery import tree_publish
from ml.delivery.gitops import GitOpsError, Release
from stacks.config import load_stack_file, stack_file
from stacks.delivery import deploy_parameter, model_releases, writes_tree_over_ssh

BUCKET = "mlplatform-prod-models-123456789012-eu-west-1"


def test_the_deploy_parameter_carries_the_stacks_tree_and_serving_settings():
    cfg = load_stack_file(stack_file("prod"))
    deploy = tree_publish.parse_parameter(deploy_parameter(cfg, BUCKET))
    g = cfg.workloads.gitops
    assert (deploy.target.location, deploy.target.branch, deploy.target.path, deploy.target.promotion) == \
        (g.repo_url, g.branch, g.path, "pullRequest")
    assert deploy.target.environment == "prod" and deploy.target.bucket == BUCKET
    assert deploy.credentials_secret == g.credentials_secret == "mlplat-deploy-git"
    assert deploy.models == model_releases(cfg)  # replicas and weights: what the renderer takes from the stack
    local = tree_publish.parse_parameter(deploy_parameter(cfg, BUCKET, location="/state/deploy.git"))
    assert local.target.location == "/state/deploy.git" and local.credentials_secret is None


@pytest.mark.parametrize(("text", "message"), [
    ("{not json", "is not JSON"),
    ("[1]", "must be a JSON object"),
    (json.dumps({"repoUrl": "x", "branch": "main"}), "lacks path, promotion, environment, bucket, models"),
    (json.dumps({"repoUrl": "x", "branch": "main", "path": "deploy", "promotion": "commit", "environment": "dev",
                 "bucket": "b", "models": [{"name": "fraud"}]}), "a model of the `deploy` pipeline parameter"),
])
def test_a_bad_deploy_parameter_is_named(text: str, message: str):
    with pytest.raises(GitOpsError, match=message):
        tree_publish.parse_parameter(text)


def test_https_credentials_become_a_private_credential_store_for_this_process(tmp_path: Path):
    secret, scratch = tmp_path / "secret", tmp_path / "scratch"
    secret.mkdir()
    scratch.mkdir()
    (secret / "username").write_text("x-access-token\n")
    (secret / "password").write_text("s3cr/t@1\n")
    env = tree_publish.credentials_env(secret, "https://git.example.com:8443/org/deploy.git", scratch)
    assert env["GIT_CONFIG_COUNT"] == "1" and env["GIT_CONFIG_KEY_0"] == "credential.helper"
    store = scratch / "git-credentials"
    assert env["GIT_CONFIG_VALUE_0"] == f"store --file={store}"
    # Quoted, so that a token with '/' or '@' still parses as one URL.
    assert store.read_text() == "https://x-access-token:s3cr%2Ft%401@git.example.com:8443\n"
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    with pytest.raises(GitOpsError, match="is not an https:// URL"):
        tree_publish.credentials_env(secret, "git@github.com:org/deploy.git", scratch)


def test_a_deploy_key_is_used_with_the_hosts_key_checked(tmp_path: Path):
    secret, scratch = tmp_path / "secret", tmp_path / "scratch"
    secret.mkdir()
    scratch.mkdir()
    key_text = "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----"
    (secret / "ssh-privatekey").write_text(key_text)
    with pytest.raises(GitOpsError, match="no known_hosts"):
        tree_publish.credentials_env(secret, "git@github.com:org/deploy.git", scratch)
    (secret / "known_hosts").write_text("github.com ssh-ed25519 AAAA\n")
    env = tree_publish.credentials_env(secret, "git@github.com:org/deploy.git", scratch)
    key = scratch / "id_deploy"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and key.read_text().endswith("KEY-----\n")
    assert env == {"GIT_SSH_COMMAND": f"ssh -i {key} -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes "
                                      f"-o UserKnownHostsFile={secret / 'known_hosts'}"}


def test_no_secret_mounted_means_no_credentials_and_unknown_keys_are_named(tmp_path: Path):
    assert tree_publish.credentials_env(tmp_path / "absent", "https://h/o/r.git", tmp_path) == {}
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "token").write_text("t")
    with pytest.raises(GitOpsError, match=r"hold \['token'\]: expected username and password"):
        tree_publish.credentials_env(tmp_path / "secret", "https://h/o/r.git", tmp_path)


def test_a_stack_that_names_a_secret_refuses_to_push_without_it(tmp_path: Path):
    """The publish step fails with the Secret's name, not with git's 'Authentication failed' minutes later."""
    cfg = load_stack_file(stack_file("dev"))
    deploy = tree_publish.parse_parameter(deploy_parameter(cfg, BUCKET))
    with pytest.raises(GitOpsError, match="create the Secret 'mlplat-deploy-git'"):
        tree_publish.write(deploy, Release("fraud", "2"), secret_dir=tmp_path / "not-mounted")


def test_a_model_outside_the_stack_is_not_covered_and_ssh_egress_only_for_ssh_urls():
    cfg = load_stack_file(stack_file("dev"))
    text = deploy_parameter(cfg, BUCKET)
    assert tree_publish.covers(text, "fraud") and not tree_publish.covers(text, "my-plugin-model")
    assert not writes_tree_over_ssh(cfg)  # https: the namespaces' HTTPS egress is enough
    ssh = cfg.model_copy(update={"workloads": cfg.workloads.model_copy(update={
        "gitops": cfg.workloads.gitops.model_copy(update={"repo_url": "git@github.com:org/deploy.git"})})})
    assert writes_tree_over_ssh(ssh)
    none = cfg.model_copy(update={"workloads": cfg.workloads.model_copy(update={
        "gitops": cfg.workloads.gitops.model_copy(update={"repo_url": "git@github.com:org/deploy.git",
                                                          "credentials_secret": None})})})
    assert not writes_tree_over_ssh(none)


def test_the_commit_message_gates_line_comes_from_the_card():
    assert tree_publish.release_message({"gates": {"passed": True, "summary": "auc 0.99 >= 0.95"}}) == \
        "passed: auc 0.99 >= 0.95"
    assert tree_publish.release_message({}).startswith("FAILED")
