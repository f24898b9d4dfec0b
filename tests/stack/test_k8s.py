"""infra/k8s: the kustomize manifests, validated offline.

Kubernetes' own kinds against the Kubernetes JSON schemas shipped by `kubernetes-validate`
(PyPI), strict (unknown fields are errors); the RabbitMQ operators' kinds against the schemas in
tests/stack/k8s_schemas/ (written from the operators' CRDs, source named in each file). Then the
facts no schema knows: the topology equals what the agents declare, the agents' variables are
settings they read, and every agent Deployment has probes, requests and a per-replica id.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from agents.core.broker import declare_topology, queue_arguments
from agents.core.settings import (
    CommonSettings,
    ConsumerSettings,
    MonitorSettings,
    PublisherSettings,
    expand_agent_id,
    load_settings,
)
from agents.provision import agents_permission_pattern
from agents.vocab import ANOMALY_QUEUE, DEAD_LETTER_QUEUE, QUEUES
from tests.stack.stackfiles import ROOT

K8S = ROOT / "infra" / "k8s"
SCHEMAS = Path(__file__).resolve().parent / "k8s_schemas"
KUBERNETES_VERSIONS = ("1.31.0", kubernetes_validate.latest_version())
OPERATOR_KINDS = {"RabbitmqCluster", "Queue", "Exchange", "Binding", "User", "Permission"}
SETTINGS_BY_COMMAND: dict[str, type[CommonSettings]] = {
    "publisher": PublisherSettings,
    "consumer": ConsumerSettings,
    "monitor": MonitorSettings,
}


def kustomization() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return data


def documents() -> list[dict[str, Any]]:
    docs = []
    for name in kustomization()["resources"]:
        docs += [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    return docs


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in documents() if d["kind"] == kind]


def operator_errors(doc: dict[str, Any]) -> list[str]:
    schema = json.loads((SCHEMAS / f"{doc['kind'].lower()}.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]


def kubernetes_errors(doc: dict[str, Any], version: str) -> list[str]:
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{list(exc.path)}: {exc.message}"]
    return []


# --- structure and schemas ----------------------------------------------------------------------


def test_kustomization_lists_every_manifest_and_only_existing_ones() -> None:
    listed = kustomization()["resources"]
    present = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == present
    assert kustomization()["namespace"] == "books-agents"
    # The image is set in one place (`kustomize edit set image books-agents=...`).
    assert [i["name"] for i in kustomization()["images"]] == ["books-agents"]
    for deployment in of_kind("Deployment"):
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"].split(":")[0] == "books-agents"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_kubernetes_kinds_validate_against_the_kubernetes_schemas(version: str) -> None:
    core = [d for d in documents() if d["kind"] not in OPERATOR_KINDS]
    assert {d["kind"] for d in core} == {"Namespace", "ConfigMap", "Secret", "Deployment"}
    for doc in core:
        assert kubernetes_errors(doc, version) == [], f"{doc['kind']}/{doc['metadata']['name']}"


def test_operator_kinds_validate_against_the_operator_schemas() -> None:
    operator = [d for d in documents() if d["kind"] in OPERATOR_KINDS]
    assert {d["kind"] for d in operator} == OPERATOR_KINDS
    for doc in operator:
        assert operator_errors(doc) == [], f"{doc['kind']}/{doc['metadata']['name']}"


def test_the_schema_checks_catch_broken_manifests() -> None:
    deployment = copy.deepcopy(of_kind("Deployment")[0])
    deployment["spec"]["template"]["spec"]["contaners"] = deployment["spec"]["template"][
        "spec"
    ].pop("containers")
    assert kubernetes_errors(deployment, KUBERNETES_VERSIONS[-1])
    replicas = copy.deepcopy(of_kind("Deployment")[0])
    replicas["spec"]["replicas"] = "two"
    assert kubernetes_errors(replicas, KUBERNETES_VERSIONS[-1])
    queue = copy.deepcopy(of_kind("Queue")[0])
    queue["spec"]["queueType"] = queue["spec"].pop("type")
    assert operator_errors(queue)
    binding = copy.deepcopy(of_kind("Binding")[0])
    binding["spec"]["destinationType"] = "topic"
    assert operator_errors(binding)
    cluster = copy.deepcopy(of_kind("RabbitmqCluster")[0])
    cluster["spec"]["persistance"] = {"storage": "10Gi"}
    assert operator_errors(cluster)


# --- RabbitMQ: the cluster and the topology -----------------------------------------------------


def test_a_three_node_cluster_with_persistence() -> None:
    (cluster,) = of_kind("RabbitmqCluster")
    spec = cluster["spec"]
    assert spec["replicas"] == 3 and spec["replicas"] % 2 == 1  # a quorum needs a majority
    assert spec["persistence"]["storage"] == "10Gi"
    assert spec["image"].startswith("rabbitmq:4.")
    (config,) = of_kind("ConfigMap")
    timeout_ms = int(config["data"]["RABBITMQ_CONSUMER_TIMEOUT_SECONDS"]) * 1000
    assert f"consumer_timeout = {timeout_ms}" in spec["rabbitmq"]["additionalConfig"]
    for kind in OPERATOR_KINDS - {"RabbitmqCluster"}:
        for doc in of_kind(kind):
            reference = doc["spec"]["rabbitmqClusterReference"]
            assert reference == {"name": cluster["metadata"]["name"]}, doc["metadata"]["name"]
    assert of_kind("ConfigMap")[0]["data"]["RABBITMQ_HOST"] == cluster["metadata"]["name"]


class RecordingChannel:
    """Records what `declare_topology` declares, without a broker."""

    def __init__(self) -> None:
        self.exchanges: dict[str, str] = {}
        self.queues: dict[str, dict[str, Any]] = {}

    def exchange_declare(self, exchange: str, exchange_type: str, durable: bool) -> None:
        assert durable
        self.exchanges[exchange] = exchange_type

    def queue_declare(self, queue: str, durable: bool, arguments: dict[str, Any] | None) -> Any:
        assert durable
        self.queues[queue] = dict(arguments or {})

        class Method:
            message_count = 0

        class Result:
            method = Method()

        return Result()

    def queue_bind(self, queue: str, exchange: str, routing_key: str) -> None:
        pass


def test_the_topology_resources_are_what_the_agents_declare() -> None:
    # The agents redeclare the topology on every connection: any difference in a queue's type or
    # arguments would make RabbitMQ refuse them (406) and every agent stop.
    channel = RecordingChannel()
    declared = declare_topology(channel, "quorum")
    queues = {q["spec"]["name"]: q["spec"] for q in of_kind("Queue")}
    assert set(queues) == {*QUEUES, DEAD_LETTER_QUEUE, ANOMALY_QUEUE} == set(channel.queues)
    for name, spec in queues.items():
        assert spec["durable"] is True and spec.get("autoDelete") is False, name
        as_declared = {"x-queue-type": spec["type"], **spec.get("arguments", {})}
        assert as_declared == channel.queues[name] == queue_arguments(name, "quorum"), name
    exchanges = {e["spec"]["name"]: e["spec"]["type"] for e in of_kind("Exchange")}
    assert exchanges == channel.exchanges
    bindings = sorted(
        (b["spec"]["source"], b["spec"]["destination"], b["spec"]["routingKey"])
        for b in of_kind("Binding")
    )
    assert all(b["spec"]["destinationType"] == "queue" for b in of_kind("Binding"))
    expected = sorted(
        (b["exchange"], b["queue"], b["routing_key"])
        for b in declared["bindings"]  # type: ignore[attr-defined]
    )
    assert bindings == expected


def test_the_agents_account_has_the_compose_stacks_permissions_and_no_tags() -> None:
    (user,) = of_kind("User")
    (permission,) = of_kind("Permission")
    assert user["spec"]["tags"] == []
    pattern = agents_permission_pattern()
    assert permission["spec"]["permissions"] == {
        "configure": pattern,
        "write": pattern,
        "read": pattern,
    }
    assert permission["spec"]["userReference"] == {"name": user["metadata"]["name"]}
    secret_name = user["spec"]["importCredentialsSecret"]["name"]
    (secret,) = [s for s in of_kind("Secret") if s["metadata"]["name"] == secret_name]
    assert set(secret["stringData"]) == {"username", "password"}


# --- the agents -------------------------------------------------------------------------------


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = container
    return result


def agent_env(deployment: dict[str, Any], hostname: str) -> dict[str, str]:
    """The environment a pod of this Deployment gets (ConfigMap, Secrets, its own env)."""
    configs = {c["metadata"]["name"]: c["data"] for c in of_kind("ConfigMap")}
    secrets = {s["metadata"]["name"]: s["stringData"] for s in of_kind("Secret")}
    container = _container(deployment)
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env |= configs[source["configMapRef"]["name"]]
        else:
            env |= secrets[source["secretRef"]["name"]]
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = secrets[ref["name"]][ref["key"]]
    for key, value in env.items():
        env[key] = str(expand_agent_id(value, hostname=hostname))
    return env


def test_every_agent_deployment_has_probes_requests_and_runs_unprivileged() -> None:
    deployments = {d["metadata"]["name"]: d for d in of_kind("Deployment")}
    assert set(deployments) == set(SETTINGS_BY_COMMAND)
    assert {n: d["spec"]["replicas"] for n, d in deployments.items()} == {
        "publisher": 2,
        "consumer": 2,
        "monitor": 1,
    }
    for name, deployment in deployments.items():
        container = _container(deployment)
        assert container["command"] == ["agents", name]
        assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
        assert "memory" in container["resources"]["limits"], name
        for probe in ("readinessProbe", "livenessProbe"):
            command = " ".join(container[probe]["exec"]["command"])
            # An established connection (state 01) to the AMQP port, in hex as /proc shows it.
            assert f":{5672:04X} 01 " in command, (name, probe)
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
    (config,) = of_kind("ConfigMap")
    assert config["data"]["RABBITMQ_PORT"] == "5672"


@pytest.mark.parametrize("name", sorted(SETTINGS_BY_COMMAND))
def test_each_agent_reads_every_variable_it_gets_and_they_are_valid(name: str) -> None:
    (deployment,) = [d for d in of_kind("Deployment") if d["metadata"]["name"] == name]
    cls = SETTINGS_BY_COMMAND[name]
    known = {(f.alias or n).upper() for n, f in cls.model_fields.items()}
    env = agent_env(deployment, hostname=f"{name}-7d9f8b6c4-x2k9p")
    assert sorted(set(env) - known) == [], f"{name} gets variables it never reads"
    by_variable = {(f.alias or n).upper(): (f.alias or n) for n, f in cls.model_fields.items()}
    overrides: dict[str, Any] = {by_variable[k]: v for k, v in env.items() if v != ""}
    settings = load_settings(cls, **overrides)
    assert settings.queue_type == "quorum"
    if name != "monitor":
        # Each pod names itself after its pod name: unique per replica.
        assert settings.agent_id == f"{name}-7d9f8b6c4-x2k9p"
        other = agent_env(deployment, hostname=f"{name}-7d9f8b6c4-q8w2z")
        assert other[f"{name.upper()}_ID"] != env[f"{name.upper()}_ID"]
