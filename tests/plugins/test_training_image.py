"""The training image (include/Dockerfile) agrees with the pod KubernetesTrainOperator renders.

The image cannot be built here (no registry for the base image), so these checks are static:
the Dockerfile is split into instructions the way Docker does (continuations joined, comment
lines dropped), then checked against the operator's settings and the core package.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path

import pytest
from driftline.settings import KubernetesSettings
from driftline_provider.operators.kubernetes import pod_options
from driftline_provider.operators.training import training_command

INCLUDE = Path(__file__).resolve().parents[2] / "include"
DOCKERFILE = INCLUDE / "Dockerfile"
INSTRUCTIONS = {"ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM",
                "HEALTHCHECK", "LABEL", "MAINTAINER", "ONBUILD", "RUN", "SHELL",
                "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"}
PLAN = {"data_version": "abc1234", "start": "2013-01-01", "end": "2013-01-24"}


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
    assert all(args.split()[0] == "${PYTHON_IMAGE}" for cmd, args in parsed if cmd == "FROM")


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
    assert env["PYTHONUNBUFFERED"] == "1"  # the log is followed line by line


def test_dockerignore_keeps_only_the_package():
    rules = [ln for ln in (INCLUDE / ".dockerignore").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert rules[0] == "*" and {"!pyproject.toml", "!driftline/"} <= set(rules)
    assert "**/__pycache__" in rules
