"""The Test page's Consume section against a real emulator: the keys masked until asked for,
read only when the section is opened, and snippets that work when run for real.

Uses its own endpoints, `consume-ep` (key auth: blue with all live traffic, green at 0%) and
`consume-token-ep` (aml_token auth, blue only), so it disturbs no other test's.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from components.consume import open_key, show_key, target_key
from rollout.workspace import Workspace
from tests.conftest import REPO, RunningEmulator, example_yaml, seed_tutorial_endpoint

pytestmark = pytest.mark.emulator

ENDPOINT = "consume-ep"
TOKEN_ENDPOINT = "consume-token-ep"
BLUE_ANSWER = [10980.66, 4459.33]
GREEN_ANSWER = [4952.82, 3830.04]
RUN_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def seeded(
    emulator: RunningEmulator, examples: Path, tmp_path_factory: pytest.TempPathFactory
) -> RunningEmulator:
    from emulator.apply import apply_file

    folder = tmp_path_factory.mktemp("consume-yaml")
    seed_tutorial_endpoint(emulator, ENDPOINT, folder)
    token = example_yaml("endpoint", folder, name=TOKEN_ENDPOINT, auth_mode="aml_token")
    apply_file(emulator.state_dir, token, if_missing=True)
    blue = example_yaml("blue-deployment", folder, endpoint_name=TOKEN_ENDPOINT)
    apply_file(emulator.state_dir, blue, all_traffic=True, if_missing=True)
    return emulator


@pytest.fixture
def page_env(seeded: RunningEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EMULATOR_STATE_DIR", str(seeded.state_dir))
    monkeypatch.setenv("BLUEGREEN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("BLUEGREEN_READ_ONLY", raising=False)


def _open_page(endpoint: str = ENDPOINT) -> AppTest:
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    app.switch_page("app_pages/test.py")
    app.query_params["endpoint"] = endpoint
    app.run()
    assert not app.exception, app.exception
    return app


def _open_section(app: AppTest, endpoint: str = ENDPOINT) -> AppTest:
    app.session_state[open_key(endpoint)] = True
    app.run()
    assert not app.exception, app.exception
    return app


def _arm_requests(app: AppTest, ws: Workspace) -> int:
    return int(app.session_state["workspace_reads"][ws.key].ws.arm_calls.count.requests)


def _everything_shown(app: AppTest) -> str:
    """Every element of the page as its protobuf text: what the browser would get."""
    seen: list[str] = []

    def walk(node: Any) -> None:
        proto = getattr(node, "proto", None)
        if proto is not None:
            seen.append(str(proto))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(app._tree)
    return "\n".join(seen)


def _snippet(app: AppTest, language: str) -> str:
    """The first snippet in `language` (curl in bash comes before the az CLI's)."""
    return next(c.value for c in app.code if c.language == language)


def _answer(stdout: str) -> list[float]:
    return [float(v) for v in json.loads(stdout)]


def _run_bash(snippet: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", snippet],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )


def _run_python(snippet: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", snippet],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )


def test_the_keys_are_read_only_when_the_section_is_opened(
    page_env: None, workspace: Workspace
) -> None:
    app = _open_page()
    before = _arm_requests(app, workspace)
    app.text_area(key="invoke_request").input('{"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]}')
    app.run()
    assert _arm_requests(app, workspace) == before, "a closed section reads nothing"
    assert not app.code, "the closed section draws nothing"

    _open_section(app)
    opened = _arm_requests(app, workspace)
    assert opened > before  # the keys (azure-ai-ml reads the endpoint first, then listKeys)
    app.selectbox(key=target_key(ENDPOINT)).set_value("green").run()
    app.toggle(key=show_key(ENDPOINT)).set_value(True).run()
    assert not app.exception, app.exception
    assert _arm_requests(app, workspace) == opened, "the keys are kept while it is open"


def test_the_key_is_masked_and_nowhere_on_the_page_until_show_key(
    page_env: None, workspace: Workspace
) -> None:
    keys = workspace.ml_client.online_endpoints.get_keys(ENDPOINT)
    app = _open_section(_open_page())

    shown = _everything_shown(app)
    assert "curl --request POST" in shown  # the walk sees inside the tabs
    for key in (keys.primary_key, keys.secondary_key):
        assert key not in shown
        assert f"{key[:4]}••••••••{key[-4:]}" in "\n".join(m.value for m in app.markdown)
    assert "$ENDPOINT_KEY" in _snippet(app, "bash")
    assert 'os.environ["ENDPOINT_KEY"]' in _snippet(app, "python")
    assert keys.primary_key not in str(dict(app.query_params))
    assert app.code[0].value == workspace.ml_client.online_endpoints.get(ENDPOINT).scoring_uri

    app.toggle(key=show_key(ENDPOINT)).set_value(True).run()
    assert not app.exception, app.exception
    values = [c.value for c in app.code]
    assert keys.primary_key in values and keys.secondary_key in values
    assert keys.primary_key in _snippet(app, "bash")
    assert keys.primary_key in _snippet(app, "python")
    assert keys.primary_key not in str(dict(app.query_params))
    assert any("written into the snippets" in c.value for c in app.caption)

    app.toggle(key=show_key(ENDPOINT)).set_value(False).run()
    assert keys.primary_key not in _everything_shown(app)


def test_the_curl_snippet_run_for_real_gets_the_models_answer(
    page_env: None, workspace: Workspace
) -> None:
    key = workspace.ml_client.online_endpoints.get_keys(ENDPOINT).primary_key
    app = _open_section(_open_page())
    curl = _snippet(app, "bash")
    assert workspace.facts is not None
    assert f"--cacert {shlex.quote(workspace.facts.ca_cert)}" in curl

    routed = _run_bash(curl, {"ENDPOINT_KEY": key})
    assert routed.returncode == 0, routed.stderr
    assert _answer(routed.stdout) == pytest.approx(BLUE_ANSWER, abs=0.01)  # blue has 100%

    app.selectbox(key=target_key(ENDPOINT)).set_value("green").run()
    app.toggle(key=show_key(ENDPOINT)).set_value(True).run()
    green = _run_bash(_snippet(app, "bash"), {})  # the key is in the snippet now
    assert green.returncode == 0, green.stderr
    assert _answer(green.stdout) == pytest.approx(GREEN_ANSWER, abs=0.01)


def test_the_python_snippet_run_for_real_gets_the_models_answer(
    page_env: None, workspace: Workspace
) -> None:
    key = workspace.ml_client.online_endpoints.get_keys(ENDPOINT).primary_key
    app = _open_section(_open_page())
    python = _snippet(app, "python")
    assert "cafile=" in python

    routed = _run_python(python, {"ENDPOINT_KEY": key})
    assert routed.returncode == 0, routed.stderr
    assert _answer(routed.stdout) == pytest.approx(BLUE_ANSWER, abs=0.01)

    refused = _run_python(python, {"ENDPOINT_KEY": "not-the-key"})
    assert refused.returncode == 1
    assert "status code 401" in refused.stdout


def test_a_token_endpoint_says_how_to_get_a_token_and_its_snippet_works(
    page_env: None, workspace: Workspace
) -> None:
    app = _open_section(_open_page(TOKEN_ENDPOINT), TOKEN_ENDPOINT)
    text = "\n".join(m.value for m in app.markdown)
    assert "aml_token" in text and "expire" in text and "UTC" in text
    assert any("az ml online-endpoint get-credentials" in c.value for c in app.code)
    assert "$ENDPOINT_TOKEN" in _snippet(app, "bash")

    app.toggle(key=show_key(TOKEN_ENDPOINT)).set_value(True).run()
    assert not app.exception, app.exception
    answer = _run_bash(_snippet(app, "bash"), {})
    assert answer.returncode == 0, answer.stderr
    assert _answer(answer.stdout) == pytest.approx(BLUE_ANSWER, abs=0.01)


def test_read_only_mode_still_shows_the_section(
    page_env: None, workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BLUEGREEN_READ_ONLY", "1")
    app = _open_section(_open_page())
    assert not app.toggle(key=show_key(ENDPOINT)).disabled
    assert "$ENDPOINT_KEY" in _snippet(app, "bash")
