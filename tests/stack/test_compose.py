"""docker-compose.yml, .env.example and the agent image, checked without a Docker engine."""

from __future__ import annotations

import copy
import fnmatch
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from agents.core.settings import (
    BrokerSettings,
    CommonSettings,
    ConsumerSettings,
    MonitorSettings,
    PublisherSettings,
)
from agents.provision import InfluxProvisionSettings, RabbitUserSettings
from tests.stack.stackfiles import (
    AGENT_IMAGE,
    AGENTS,
    COMPOSE_FILE,
    DOCKERFILE,
    INFRA_PORTS,
    PROMTAIL_CONFIG,
    README,
    REPLICAS,
    ROOT,
    SCALABLE,
    SETUP_JOBS,
    compose,
    env_file,
    interpolate,
    load_yaml,
    published_ports,
    referenced_variables,
    service_env,
    services,
)

SETTINGS_BY_TYPE: dict[str, type[CommonSettings]] = {
    "publisher": PublisherSettings,
    "consumer": ConsumerSettings,
    "monitor": MonitorSettings,
}


def compose_schema_errors(document: dict[str, Any]) -> list[str]:
    """Validate against check-jsonschema's vendored compose-spec schema (offline)."""
    schema_file = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]


# --- schema and structure ----------------------------------------------------------------------


def test_compose_file_validates_against_the_compose_spec_schema() -> None:
    assert compose_schema_errors(compose()) == []


def test_the_schema_check_catches_a_broken_compose_file() -> None:
    broken = copy.deepcopy(compose())
    broken["services"]["rabbitmq"]["healthcheck"]["intervall"] = "10s"
    broken["services"]["monitor"]["depends_on"]["loki"]["condition"] = "service_ready"

    errors = compose_schema_errors(broken)

    assert any("intervall" in e for e in errors)
    assert any("service_ready" in e for e in errors)


def test_no_obsolete_top_level_version() -> None:
    assert "version" not in compose()


def test_every_depends_on_target_exists_and_its_condition_can_be_met() -> None:
    every = services()
    for name, service in every.items():
        for target, rule in (service.get("depends_on") or {}).items():
            assert target in every, f"{name} depends on undefined service {target}"
            condition = rule.get("condition", "service_started")
            if condition == "service_healthy":
                assert "healthcheck" in every[target], f"{name}: {target} has no healthcheck"
            if condition == "service_completed_successfully":
                assert every[target].get("restart", "no") == "no", (
                    f"{name}: {target} restarts, so it never completes"
                )


def test_agents_start_after_topology_bucket_and_loki() -> None:
    for name in AGENTS:
        depends = services()[name]["depends_on"]
        assert depends["rabbitmq-setup"]["condition"] == "service_completed_successfully"
        assert depends["influxdb-setup"]["condition"] == "service_completed_successfully"
        assert depends["loki"]["condition"] == "service_healthy"
    assert services()["rabbitmq-setup"]["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
    assert services()["influxdb-setup"]["depends_on"]["influxdb"]["condition"] == "service_healthy"


def test_every_service_of_the_specification_is_there_with_its_ports() -> None:
    every = services()
    assert set(INFRA_PORTS) | set(AGENTS) | set(SETUP_JOBS) == set(every)
    for name, ports in INFRA_PORTS.items():
        published = published_ports(name)
        assert set(published) == ports, name
        # With .env.example's values the host port is the specification's port.
        assert {host_port for _, host_port in published.values()} == ports, name
    for name in (*AGENTS, *SETUP_JOBS):
        assert "ports" not in every[name], f"{name} needs no published port"


def test_ports_are_published_on_loopback_by_default() -> None:
    for name in INFRA_PORTS:
        for address, _ in published_ports(name, env={}).values():
            assert address == "127.0.0.1", f"{name} publishes demo credentials on {address}"


def test_healthchecks_use_what_each_image_contains() -> None:
    every = services()
    for name in ("rabbitmq", "influxdb", "loki", "grafana"):
        assert every[name]["healthcheck"]["test"], name
    # Loki's image is distroless: no shell, curl or wget; only its own binary.
    assert every["loki"]["healthcheck"]["test"] == ["CMD", "/usr/bin/loki", "-health"]
    assert every["rabbitmq"]["healthcheck"]["test"][1] == "rabbitmq-diagnostics"
    assert "/health" in " ".join(every["influxdb"]["healthcheck"]["test"])
    assert "/api/health" in " ".join(every["grafana"]["healthcheck"]["test"])


# --- images -------------------------------------------------------------------------------------


def _pinned(image: str) -> bool:
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag != "latest" and bool(re.search(r"\d", tag))


@pytest.mark.parametrize("image", ["rabbitmq", "rabbitmq:latest", "grafana/loki:main", "x:3.7.8"])
def test_pin_rule(image: str) -> None:
    assert _pinned(image) is (image == "x:3.7.8")


def test_every_image_is_pinned_to_a_release() -> None:
    for name, service in services().items():
        if service["image"] == AGENT_IMAGE:
            continue  # built here; its base image is checked below
        assert _pinned(service["image"]), f"{name}: {service['image']} is not pinned"
    influx = services()["influxdb"]["image"]
    assert influx.startswith("influxdb:2."), "influxdb:3 is another product"


def test_dockerfile_base_images_are_pinned() -> None:
    text = DOCKERFILE.read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", text, flags=re.MULTILINE))
    bases = re.findall(r"^FROM (\S+)", text, flags=re.MULTILINE)
    assert bases
    for base in bases:
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)
        assert _pinned(image), image
        assert re.match(r"python:3\.11[.-]", image), image


def test_one_agent_image_for_the_agents_and_the_setup_jobs() -> None:
    names = (*AGENTS, *SETUP_JOBS)
    assert {services()[n]["image"] for n in names} == {AGENT_IMAGE}


def test_the_agent_image_is_built_by_one_service_only() -> None:
    # Compose builds through Bake in parallel: two `build:` sections exporting one tag collide
    # ("image ... already exists") on a fresh host.
    builders = [name for name, service in services().items() if "build" in service]
    assert builders == ["rabbitmq-setup"], builders
    assert services()["rabbitmq-setup"]["build"]["dockerfile"] == "infra/Dockerfile"
    for name, service in services().items():
        if service.get("image") == AGENT_IMAGE and name not in builders:
            # Never pulled: the tag exists on no registry, only after the build.
            assert service.get("pull_policy") == "never", name
    # Every agent waits for the builder, so `docker compose up consumer` builds the image too.
    for name in AGENTS:
        assert "rabbitmq-setup" in services()[name]["depends_on"], name


def test_the_one_build_rule_catches_a_second_build() -> None:
    broken = copy.deepcopy(services())
    broken["consumer"]["build"] = {"context": ".", "dockerfile": "infra/Dockerfile"}
    assert [n for n, s in broken.items() if "build" in s] != ["rabbitmq-setup"]


# --- RabbitMQ administrator ------------------------------------------------------------------


@pytest.mark.parametrize(
    "env",
    [
        {},  # .env.example as shipped
        {"RABBITMQ_ADMIN_USER": "ops", "RABBITMQ_ADMIN_PASS": "a-Changed-Pa55"},  # README advice
    ],
    ids=["example", "changed"],
)
def test_the_broker_creates_the_administrator_the_setup_job_logs_in_as(env: dict[str, str]) -> None:
    values = {**env_file(), **env}
    broker = service_env("rabbitmq", env=values)
    setup = service_env("rabbitmq-setup", env=values)
    assert broker["RABBITMQ_DEFAULT_USER"] == setup["RABBITMQ_ADMIN_USER"]
    assert broker["RABBITMQ_DEFAULT_PASS"] == setup["RABBITMQ_ADMIN_PASS"]
    if env:
        assert broker["RABBITMQ_DEFAULT_PASS"] == "a-Changed-Pa55"


def test_the_broker_refuses_to_start_without_the_admin_password() -> None:
    required = {k: v for k, v in env_file().items() if k != "RABBITMQ_ADMIN_PASS"}
    with pytest.raises(KeyError, match="RABBITMQ_ADMIN_PASS"):
        service_env("rabbitmq", env=required)


# --- Docker requirements and the setup jobs' outcome ----------------------------------------


def test_start_interval_is_used_so_the_engine_floor_is_stated() -> None:
    uses_start_interval = any(
        "start_interval" in service.get("healthcheck", {}) for service in services().values()
    )
    assert uses_start_interval
    header = COMPOSE_FILE.read_text().split("name:", 1)[0]
    assert "Docker Engine >= 25" in header and "Compose v2" in header
    readme = README.read_text()
    assert "Docker Engine >= 25" in readme and "Compose v2" in readme


def test_readme_says_where_the_setup_jobs_outcome_is() -> None:
    # They exit before Promtail's discovery sees them: their lines may never reach Loki.
    readme = README.read_text()
    assert "docker compose ps --all rabbitmq-setup influxdb-setup" in readme
    assert "docker compose logs rabbitmq-setup influxdb-setup" in readme


# --- agents ---------------------------------------------------------------------------------------


def test_each_agent_runs_its_command_with_its_labels() -> None:
    for name, (agent_type, _) in AGENTS.items():
        service = services()[name]
        assert service["command"] == ["agents", agent_type]
        labels = service["labels"]
        assert labels["agent_type"] == agent_type
        # The fallback for lines that are not JSON; JSON lines carry each replica's own id.
        assert labels["agent_id"] in (name, "monitor-1")


def test_agent_labels_are_the_ones_promtail_relabels() -> None:
    relabels = load_yaml(PROMTAIL_CONFIG)["scrape_configs"][0]["relabel_configs"]
    prefix = "__meta_docker_container_label_"
    container_labels = {
        source[len(prefix) :]
        for rule in relabels
        for source in rule["source_labels"]
        if source.startswith(prefix) and not source.startswith(prefix + "com_docker")
    }
    assert container_labels == {"agent_id", "agent_type"}
    for name in AGENTS:
        assert container_labels <= set(services()[name]["labels"]), name
    # The JSON stage replaces the container's agent_id with the line's own (one per replica).
    promoted = next(
        s["labels"]
        for s in load_yaml(PROMTAIL_CONFIG)["scrape_configs"][0]["pipeline_stages"]
        if "labels" in s
    )
    assert "agent_id" in promoted


def test_scalable_agents_have_nothing_fixed_per_container() -> None:
    for name in AGENTS:
        service = services()[name]
        for fixed in ("container_name", "hostname", "ports"):
            assert fixed not in service, f"{name}: {fixed} breaks --scale {name}=N"
        assert service.get("deploy", {}).get("replicas", 1) == REPLICAS[name], name
    assert sum(REPLICAS.values()) == 5  # the specification's fleet


@pytest.mark.parametrize("name", SCALABLE)
def test_each_replica_of_a_scaled_agent_has_its_own_id(name: str) -> None:
    from agents.core.settings import expand_agent_id

    agent_type, template = AGENTS[name]
    assert service_env(name)[f"{agent_type.upper()}_ID"] == template
    cls = SETTINGS_BY_TYPE[agent_type]
    ids = set()
    for hostname in ("3f2a1b4c5d6e", "9c0ffee12345", "A_Host.example.org"):
        kwargs = _as_init_kwargs(cls, service_env(name))
        id_field = next(k for k in kwargs if k.endswith("_id"))
        kwargs[id_field] = expand_agent_id(kwargs[id_field], hostname=hostname)
        ids.add(cls(**kwargs).agent_id)
    assert ids == {
        f"{agent_type}-3f2a1b4c5d6e",
        f"{agent_type}-9c0ffee12345",
        f"{agent_type}-a-host",
    }


def test_promtail_discovers_every_long_running_service() -> None:
    sd = load_yaml(PROMTAIL_CONFIG)["scrape_configs"][0]["docker_sd_configs"][0]
    (wanted,) = next(f for f in sd["filters"] if f["name"] == "label")["values"]
    key, _, value = wanted.partition("=")
    for name, service in services().items():
        if name == "promtail":
            continue
        assert service.get("labels", {}).get(key) == value, f"{name}: logs would not reach Loki"


def test_agent_ids_come_from_the_environment_the_settings_read() -> None:
    import socket

    host = socket.gethostname().split(".")[0].lower()
    for name, (agent_type, template) in AGENTS.items():
        cls = SETTINGS_BY_TYPE[agent_type]
        settings = cls(**_as_init_kwargs(cls, service_env(name)))
        expected = template.replace("{hostname}", re.sub(r"[^a-z0-9-]+", "-", host).strip("-"))
        assert settings.agent_id == expected[:63].rstrip("-")


@pytest.mark.parametrize("name", list(AGENTS))
def test_every_variable_passed_to_an_agent_is_a_setting_it_reads(name: str) -> None:
    cls = SETTINGS_BY_TYPE[AGENTS[name][0]]
    known = _variable_names(cls)
    unknown = sorted(set(service_env(name)) - known)
    assert unknown == [], f"{name} passes variables {cls.__name__} ignores: {unknown}"


@pytest.mark.parametrize(
    ("job", "models"),
    [
        ("rabbitmq-setup", (BrokerSettings, RabbitUserSettings)),
        ("influxdb-setup", (InfluxProvisionSettings,)),
    ],
)
def test_setup_jobs_pass_only_variables_they_read(job: str, models: tuple[type[Any], ...]) -> None:
    known = set().union(*(_variable_names(m) for m in models))
    assert sorted(set(service_env(job)) - known) == []
    for model in models:  # .env.example's values are valid for every model
        model(**_as_init_kwargs(model, service_env(job)))


def test_agents_use_their_own_rabbitmq_account_and_the_compose_influxdb() -> None:
    for name in AGENTS:
        env = service_env(name)
        assert env["RABBITMQ_USER"] == "agents" != env_file()["RABBITMQ_ADMIN_USER"]
        assert env["RABBITMQ_HOST"] == "rabbitmq"
        assert env["INFLUXDB_URL"] == "http://influxdb:8086"
        assert env["INFLUXDB_TOKEN"] == env_file()["INFLUXDB_TOKEN"]
    setup = service_env("rabbitmq-setup")
    assert setup["RABBITMQ_USER"] == service_env("publisher")["RABBITMQ_USER"]
    # Setup declares the queues with the type the agents expect.
    assert setup["QUEUE_TYPE"] == service_env("consumer")["QUEUE_TYPE"] == "quorum"


def test_specification_defaults_for_each_agent() -> None:
    assert services()["publisher"]["environment"]["DRY_RUN"] == "${DRY_RUN:-false}"
    expected = {
        "publisher": {"MAX_TOKENS": "300", "DECISION_INTERVAL_SECONDS": "60"},
        "consumer": {"MAX_TOKENS": "200", "AI_DECISION_RATE": "0.1"},
        "monitor": {"MAX_TOKENS": "400", "CHECK_INTERVAL_SECONDS": "120"},
    }
    required = {k: v for k, v in env_file().items() if referenced_variables()[k] == ":?"}
    for name, values in expected.items():
        env = service_env(name, env=required)  # the compose defaults alone, only the secrets set
        assert {k: env[k] for k in values} == values


def test_without_an_api_key_nothing_is_billed() -> None:
    assert env_file()["ANTHROPIC_API_KEY"] == ""
    for name in AGENTS:
        assert service_env(name)["ANTHROPIC_API_KEY"] == ""


def test_json_file_logging_with_rotation_everywhere() -> None:
    for name, service in services().items():
        logging = service.get("logging", {})
        assert logging.get("driver") == "json-file", name
        assert re.fullmatch(r"\d+[km]", logging["options"]["max-size"]), name
        assert int(logging["options"]["max-file"]) >= 1, name


def test_named_volumes_for_influxdb_loki_and_grafana() -> None:
    declared = set(compose()["volumes"])
    for name, target in (
        ("influxdb", "/var/lib/influxdb2"),
        ("loki", "/loki"),
        ("grafana", "/var/lib/grafana"),
    ):
        mounts = dict(v.split(":")[:2][::-1] for v in services()[name]["volumes"])
        assert mounts.get(target) in declared, f"{name}: {target} is not a named volume"


def test_bind_mounted_files_exist() -> None:
    for name, service in services().items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name}: {source} missing"


# --- .env.example ---------------------------------------------------------------------------------


def test_env_example_defines_every_variable_the_compose_file_uses() -> None:
    example = env_file()
    used = referenced_variables()
    assert sorted(set(used) - set(example)) == []
    assert sorted(set(example) - set(used)) == [], ".env.example has unused variables"
    for name, op in used.items():
        if op == ":?":
            assert example[name], f"{name} is required but empty in .env.example"


def test_compose_refuses_to_start_without_the_secrets() -> None:
    with pytest.raises(KeyError, match=r"INFLUXDB_TOKEN: copy \.env\.example to \.env"):
        service_env("publisher", env={})


def test_env_example_has_the_specification_demo_credentials() -> None:
    example = env_file()
    assert (example["INFLUXDB_ADMIN_USER"], example["INFLUXDB_ADMIN_PASSWORD"]) == (
        "admin",
        "password123",
    )
    assert (example["GRAFANA_ADMIN_USER"], example["GRAFANA_ADMIN_PASSWORD"]) == ("admin", "admin")
    assert (example["RABBITMQ_ADMIN_USER"], example["RABBITMQ_ADMIN_PASS"]) == ("guest", "guest")
    assert (example["INFLUXDB_ORG"], example["INFLUXDB_BUCKET"]) == ("monitoring", "agent_metrics")
    assert len(example["INFLUXDB_TOKEN"]) >= 32
    interpolated = interpolate(services()["influxdb"]["environment"], example)
    assert interpolated["DOCKER_INFLUXDB_INIT_RETENTION"] == "7d"
    assert interpolated["DOCKER_INFLUXDB_INIT_MODE"] == "setup"


def test_env_file_with_real_keys_stays_out_of_git() -> None:
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()


# --- agent image ----------------------------------------------------------------------------------


def _dockerignore_allows(path: str) -> bool:
    allowed = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
            allowed = negate
    return allowed


def test_every_copy_source_exists_and_is_in_the_build_context() -> None:
    text = DOCKERFILE.read_text()
    sources = [
        src
        for line in re.findall(r"^COPY (?!--from)(.+)$", text, flags=re.MULTILINE)
        for src in line.split()[:-1]
    ]
    assert {"pyproject.toml", "uv.lock", "agents/"} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: missing from the repository"
        assert _dockerignore_allows(source.rstrip("/")), f"COPY {source}: excluded by .dockerignore"
    for secret in (".env", ".venv", ".git", "var"):
        assert not _dockerignore_allows(secret), f"{secret} would be sent to the Docker daemon"


def test_image_installs_the_locked_dependencies_and_runs_unprivileged() -> None:
    text = DOCKERFILE.read_text()
    assert "uv sync --locked" in text
    assert re.search(r"^WORKDIR /app$", text, flags=re.MULTILINE)
    users = re.findall(r"^USER (\S+)$", text, flags=re.MULTILINE)
    assert users and users[-1] not in ("root", "0")


# --- helpers --------------------------------------------------------------------------------------


def _variable_names(model: type[Any]) -> set[str]:
    names = set()
    for field_name, field in model.model_fields.items():
        names.add((field.alias or field_name).upper())
    return names


def _as_init_kwargs(model: type[Any], env: dict[str, str]) -> dict[str, Any]:
    by_variable = {(f.alias or n).upper(): (f.alias or n) for n, f in model.model_fields.items()}
    return {by_variable[k]: v for k, v in env.items() if k in by_variable and v != ""}


def test_image_carries_the_data_the_package_reads_inside_the_package(tmp_path: Path) -> None:
    import agents.messages
    from agents.core.ai.cassettes import packaged_cassettes_dir, resolve_cassettes_dir

    text = DOCKERFILE.read_text()
    copied = dict(re.findall(r"^COPY (\S+)/ (/app/\S+)/$", text, flags=re.MULTILINE))
    # Editable install from /app/agents: the data inside the package lands under /app/agents.
    assert copied.get("agents") == "/app/agents"
    for data in (agents.messages.FIXTURE_PATH, packaged_cassettes_dir()):
        assert data.is_relative_to(ROOT / "agents"), data
        assert _dockerignore_allows(str(data.relative_to(ROOT)))
    # CASSETTES_DIR is relative to the working directory, /app, which has no cassettes/: the
    # default falls back to the packaged ones.
    default = CommonSettings.model_fields["cassettes_dir"].default
    assert resolve_cassettes_dir(default, cwd=tmp_path) == packaged_cassettes_dir()
