"""The Dockerfile, read statically (no Docker engine is needed): multi-stage, no build tools in the final
image, SoftHSM2 and OpenSC there, a numeric non-root user the chart agrees with, and a build context
that can never carry the development token."""

from __future__ import annotations

import re

import yaml

from tests.chart.rendering import CHART, ROOT

BUILD_TOOLS = ("gcc", "g++", "make", "build-essential", "libc6-dev", "python3-dev", "cython", "git")


def _stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuation lines joined), split into stages at each FROM."""
    text = (ROOT / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", text)
    lines = [
        line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
    stages: list[list[str]] = []
    for line in lines:
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_multi_stage_and_the_final_stage_has_no_build_tools() -> None:
    stages = _stages()
    assert len(stages) >= 2
    final = stages[-1]
    final_text = " ".join(final)
    for tool in BUILD_TOOLS:
        assert not re.search(rf"(?<![\w-]){re.escape(tool)}(?![\w-])", final_text), (
            f"{tool} in the final stage"
        )
    assert any(line.startswith("COPY --from=build") for line in final)
    installs = " ".join(line for line in final if "apt-get install" in line)
    assert "softhsm2" in installs and "opensc" in installs
    assert "rm -rf /var/lib/apt/lists/*" in installs


def test_runs_as_the_numeric_non_root_user_the_chart_expects() -> None:
    final = _stages()[-1]
    users = [line.split()[1] for line in final if line.upper().startswith("USER ")]
    assert users, "no USER in the final stage"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == int(uid)
    assert values["podSecurityContext"]["runAsGroup"] == int(gid)
    entrypoint = next(line for line in final if line.upper().startswith("ENTRYPOINT"))
    assert '"trusted-issuer"' in entrypoint


def test_build_context_is_an_allow_list_without_the_development_token() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "the context must start from nothing"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "issuer"}  # what `pip install .` needs, nothing else
    sources = [p for line in _stages()[0] if line.upper().startswith("COPY ") for p in line.split()[1:-1]]
    assert sources and {s.rstrip("/") for s in sources} <= allowed
