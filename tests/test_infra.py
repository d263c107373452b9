"""The scale-out files agree with each other and with the code, without a Docker engine or a
cluster (none runs here) and without fetching chart schemas: the YAML parses; every setting
the app reads comes from the one env file, which compose, the serving Deployment and the Airflow
chart all load; image names, ports, probes and commands are the same everywhere and exist."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from shoprec.config import Settings
from tests import scaled

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
ENV_SECRET = "shoprec-env"


def env_file() -> dict[str, str]:
    out = {}
    for n, line in enumerate((INFRA / "shoprec.env.example").read_text().splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), f"line {n}: {line!r}"
            assert key not in out, f"line {n}: {key} twice"
            out[key] = value
    return out


def compose() -> dict:
    return yaml.safe_load((INFRA / "docker-compose.yaml").read_text())


def k8s() -> list[dict]:
    docs = []
    for f in sorted((INFRA / "k8s").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(f.read_text()) if d]
    return docs


def helm() -> dict:
    return yaml.safe_load((INFRA / "helm" / "airflow-values.yaml").read_text())


def image_tag() -> str:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    return f"shoprec:{version}"


def shoprec_services(c: dict) -> dict[str, dict]:
    return {n: s for n, s in c["services"].items() if s.get("image") == image_tag()}


# ------------------------------------------------------------------------------- the env file


def test_every_shoprec_variable_is_a_setting_and_the_set_validates(monkeypatch):
    env = env_file()
    for key in env:
        if not key.startswith("SHOPREC_"):
            continue
        path = key.removeprefix("SHOPREC_").lower().split("__")
        model = Settings
        for part in path:
            assert part in model.model_fields, f"{key}: Settings has no field {part!r}"
            model = model.model_fields[part].annotation
    for key in list(os.environ):
        if key.startswith("SHOPREC_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    s = Settings()
    assert s.feast.online_store == "redis" and s.storage_root() == env["SHOPREC_STORAGE_URI"]
    assert s.airflow.db_url == env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert s.serving.admin_token is not None and s.privacy.key is not None


def test_the_scaled_test_mode_sets_what_a_cluster_sets():
    env = env_file()
    missing = set(scaled.environment("http://x", 1, "postgresql://x")) - set(env)
    assert not missing, f"the scaled mode sets {sorted(missing)}, infra/shoprec.env does not"


def test_credentials_and_hosts_agree():
    env, c = env_file(), compose()
    services = set(c["services"])
    db = urlsplit(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    assert (db.username, db.password, db.path.strip("/")) == \
        (env["POSTGRES_USER"], env["POSTGRES_PASSWORD"], env["POSTGRES_DB"])
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].endswith(
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].split("://", 1)[1])
    assert (env["MINIO_ROOT_USER"], env["MINIO_ROOT_PASSWORD"]) == \
        (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"])
    hosts = {
        urlsplit(env["SHOPREC_S3_ENDPOINT_URL"]).hostname: "minio",
        db.hostname: "postgres",
        urlsplit(env["AIRFLOW__CELERY__BROKER_URL"]).hostname: "redis",
        env["SHOPREC_FEAST__REDIS_CONNECTION"].split(":")[0]: "redis",
        urlsplit(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]).hostname: "airflow-apiserver",
        urlsplit(env["SHOPREC_AIRFLOW__API_URL"]).hostname: "airflow-apiserver",
    }
    external = {d["metadata"]["name"] for d in k8s()
                if d["kind"] == "Service" and d["spec"].get("type") == "ExternalName"}
    for host, role in hosts.items():
        assert host == role and host in services, f"{host}: not the compose service {role}"
        assert host in external, f"{host}: infra/k8s/external.yaml does not name it"
    # Celery's broker and Feast's online store share Redis on different databases
    assert urlsplit(env["AIRFLOW__CELERY__BROKER_URL"]).path != "/1"
    assert "db=1" in env["SHOPREC_FEAST__REDIS_CONNECTION"]
    api_port = urlsplit(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]).port
    assert str(api_port) in c["services"]["airflow-apiserver"]["command"]
    assert "CHANGE_ME" in env["AWS_SECRET_ACCESS_KEY"]  # no secret in the repository
    gitignore = (ROOT / ".gitignore").read_text().splitlines()
    assert "infra/shoprec.env" in gitignore


# --------------------------------------------------------------------------------- compose


def test_compose_runs_every_component_from_the_one_image_and_env():
    c = compose()
    ours = shoprec_services(c)
    commands = {n: s["command"] for n, s in ours.items()}
    for needed in (["airflow", "api-server"], ["airflow", "scheduler"],
                   ["airflow", "dag-processor"], ["airflow", "triggerer"],
                   ["airflow", "celery", "worker"], ["airflow", "db", "migrate"],
                   ["shoprec", "serve"]):
        assert any(cmd[:len(needed)] == needed for cmd in commands.values()), needed
    for name, svc in ours.items():
        assert svc["env_file"] == ["shoprec.env"], name
        assert svc["build"]["dockerfile"] == "Dockerfile" and \
            (INFRA / svc["build"]["context"] / "Dockerfile").is_file()
    assert c["services"]["serving"]["deploy"]["replicas"] >= 2
    assert c["services"]["airflow-worker"]["deploy"]["replicas"] >= 1
    for infra_svc in ("postgres", "minio"):
        assert c["services"][infra_svc]["env_file"] == ["shoprec.env"]
    nginx = (INFRA / "nginx.conf").read_text()
    port = _serve_port(c["services"]["serving"]["command"])
    assert f"server serving:{port}" in nginx and "listen 8000" in nginx
    assert c["services"]["proxy"]["volumes"][0].startswith("./nginx.conf:")


def _serve_port(cmd: list[str]) -> int:
    return int(cmd[cmd.index("--port") + 1])


def test_the_commands_exist():
    """shoprec's subcommands parse, the Airflow components and `airflow celery worker` (the
    Celery provider of the `scale` extra) are known to Airflow's own CLI parser."""
    import typer

    from shoprec.cli import app

    c = compose()
    click_cmd = typer.main.get_command(app)
    for svc in shoprec_services(c).values():
        cmd = svc["command"]
        if cmd[0] == "shoprec":
            click_cmd.make_context("shoprec", list(cmd[1:]))
    env = {**os.environ, "AIRFLOW__CORE__EXECUTOR": env_file()["AIRFLOW__CORE__EXECUTOR"]}
    airflow_cmds = [s["command"][1:] for s in shoprec_services(c).values()
                    if s["command"][0] == "airflow"]
    probe = ("import sys, json\nfrom airflow.cli import cli_parser\n"
             "p = cli_parser.get_parser()\n"
             "for argv in json.loads(sys.argv[1]):\n"
             "    p.parse_args(argv)\nprint('ok')")
    import json

    out = subprocess.run([sys.executable, "-c", probe, json.dumps(airflow_cmds)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]
    storage = subprocess.run([sys.executable, "-m", "shoprec.storage", "nonsense"],
                             capture_output=True, text=True, timeout=60)
    assert storage.returncode != 0 and "ensure-bucket" in storage.stderr
    minio_init = c["services"]["minio-init"]["command"]
    assert minio_init == ["python", "-m", "shoprec.storage", "ensure-bucket"]


# ------------------------------------------------------------------------------ Kubernetes


def test_serving_deployment_probes_ports_and_env():
    from serving.app import create_app

    docs = {(d["kind"], d["metadata"]["name"]): d for d in k8s()}
    dep = docs[("Deployment", "shoprec-serving")]
    pod = dep["spec"]["template"]["spec"]
    (ctr,) = pod["containers"]
    assert ctr["image"] == image_tag()
    assert ctr["command"] == compose()["services"]["serving"]["command"]
    port = _serve_port(ctr["command"])
    assert ctr["ports"][0]["containerPort"] == port
    assert {"secretRef": {"name": ENV_SECRET}} in ctr["envFrom"]
    assert ctr["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert ctr["livenessProbe"]["httpGet"]["path"] == "/healthz"
    paths = {r.path for r in create_app(Settings(home=Path("/nonexistent-home"))).routes}
    assert {"/readyz", "/healthz"} <= paths
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"] == labels
    svc = docs[("Service", "shoprec-serving")]
    assert svc["spec"]["selector"] == labels
    assert svc["spec"]["ports"][0]["targetPort"] in (port, ctr["ports"][0]["name"])
    hpa = docs[("HorizontalPodAutoscaler", "shoprec-serving")]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "shoprec-serving"
    assert hpa["spec"]["minReplicas"] >= 2
    claim = pod["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert ("PersistentVolumeClaim", claim) in docs
    assert ctr["volumeMounts"][0]["mountPath"] == env_file()["SHOPREC_HOME"]


def test_helm_values_use_the_image_the_env_and_the_home():
    values, env = helm(), env_file()
    repo, tag = image_tag().split(":")
    assert (values["images"]["airflow"]["repository"], values["images"]["airflow"]["tag"]) \
        == (repo, tag)
    assert values["executor"] == env["AIRFLOW__CORE__EXECUTOR"]
    assert values["airflowVersion"] == _pin("apache-airflow")
    env_from = yaml.safe_load(values["extraEnvFrom"])
    assert {"secretRef": {"name": ENV_SECRET}} in env_from
    assert values["config"]["core"]["dags_folder"] == env["AIRFLOW__CORE__DAGS_FOLDER"]
    mounts = {m["name"]: m["mountPath"] for m in values["volumeMounts"]}
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in values["volumes"]}
    assert mounts["shoprec-home"] == env["SHOPREC_HOME"]
    pvcs = {d["metadata"]["name"] for d in k8s() if d["kind"] == "PersistentVolumeClaim"}
    assert claims["shoprec-home"] in pvcs


# ------------------------------------------------------------------------------- the image


def _pin(name: str) -> str:
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.lower().startswith(f"{name}=="):
            return line.split("==", 1)[1]
    raise AssertionError(f"{name} is not pinned in constraints.txt")


def test_the_dockerfile_installs_from_the_lock_with_the_cpu_torch_wheel():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"pip install -c constraints\.txt -e \"\.\[scale\]\"", text)
    assert "COPY pyproject.toml constraints.txt" in text
    wheel = re.search(r"ARG TORCH_WHEEL=(\S+)", text).group(1)
    assert f"torch-{_pin('torch')}%2Bcpu-cp311-cp311-" in wheel and wheel.endswith(".whl")
    assert re.search(r"^FROM python:3\.11", text, re.M)
    assert f"docker build -t {image_tag()} ." in text
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for req in project["optional-dependencies"]["scale"]:
        name, version = req.split("==")
        assert _pin(name) == version, req
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert {".venv", ".shoprec", "infra/shoprec.env"} <= set(ignored)


@pytest.mark.parametrize("path", ["infra/README.md"])
def test_infra_readme_names_every_file(path):
    text = (ROOT / path).read_text()
    # the Secret every pod loads is made from the same env file compose reads
    assert f"kubectl create secret generic {ENV_SECRET} --from-env-file=infra/shoprec.env" in text
    for f in ("docker-compose.yaml", "shoprec.env.example", "k8s/serving.yaml",
              "k8s/external.yaml", "helm/airflow-values.yaml", "Dockerfile"):
        assert f in text, f
