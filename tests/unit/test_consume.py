"""The Consume section's pure parts: masking a key, and the curl, Python and az CLI snippets."""

from __future__ import annotations

import ast
import json
import shlex
import subprocess
from dataclasses import replace

import pytest

from rollout.consume import (
    INLINE_BODY_LIMIT,
    MASK,
    REQUEST_FILE,
    SnippetFacts,
    az_cli_snippet,
    credentials_command,
    curl_snippet,
    env_var,
    mask_secret,
    python_snippet,
)

KEY = "Abcd" + "k" * 35 + "wxyz"
BODY = '{"data": [[1, 2, 3], [3, 2, 1]], "flag": true, "note": "it\'s"}'
FACTS = SnippetFacts(
    endpoint="my-endpoint",
    scoring_uri="https://127.0.0.1:8443/score/my-endpoint",
    auth_mode="key",
    body=BODY,
    resource_group="rg",
    workspace_name="ws",
    deployments=("blue", "green"),
    ca_cert="/tmp/state dir/ca.pem",
    on_azure=False,
)
AZURE = replace(FACTS, ca_cert=None, on_azure=True)


def _words(snippet: str) -> list[str]:
    """The snippet as the shell would split it, comments left out."""
    return shlex.split(snippet, comments=True)


def _value_after(words: list[str], flag: str) -> list[str]:
    return [words[i + 1] for i, w in enumerate(words) if w == flag]


def test_a_key_is_masked_to_its_first_and_last_four_characters() -> None:
    assert mask_secret(KEY) == "Abcd" + MASK + "wxyz"
    assert "k" not in mask_secret(KEY)


def test_a_short_secret_is_only_dots() -> None:
    assert mask_secret("short-secret-1234") == MASK
    assert mask_secret("") == MASK


@pytest.mark.parametrize(
    ("mode", "var"),
    [("key", "ENDPOINT_KEY"), ("aml_token", "ENDPOINT_TOKEN"), ("aad_token", "ENDPOINT_TOKEN")],
)
def test_the_snippets_read_the_credential_from_a_variable_named_for_the_auth_mode(
    mode: str, var: str
) -> None:
    assert env_var(mode) == var


def test_curl_reads_the_key_from_the_environment_until_it_is_given() -> None:
    snippet = curl_snippet(FACTS)
    words = _words(snippet)
    assert "Authorization: Bearer $ENDPOINT_KEY" in _value_after(words, "--header")
    assert KEY not in snippet
    shown = curl_snippet(replace(FACTS, credential=KEY))
    assert _words(shown)[0] == f"ENDPOINT_KEY={KEY}"


def test_curl_trusts_the_emulators_ca_and_only_then() -> None:
    assert _value_after(_words(curl_snippet(FACTS)), "--cacert") == ["/tmp/state dir/ca.pem"]
    assert "--cacert" not in curl_snippet(AZURE)


def test_curl_sends_the_body_unchanged_even_with_quotes_in_it() -> None:
    (data,) = _value_after(_words(curl_snippet(FACTS)), "--data")
    assert json.loads(data) == json.loads(BODY)


def test_curl_names_the_deployment_header_in_a_comment_unless_a_deployment_is_chosen() -> None:
    routed = curl_snippet(FACTS)
    assert "azureml-model-deployment: blue" in routed
    assert not [h for h in _value_after(_words(routed), "--header") if "azureml" in h]
    headers = _value_after(_words(curl_snippet(replace(FACTS, deployment="green"))), "--header")
    assert "azureml-model-deployment: green" in headers


def test_curl_on_azure_gets_the_key_with_the_az_cli() -> None:
    snippet = curl_snippet(AZURE)
    assert "ENDPOINT_KEY=$(az ml online-endpoint get-credentials --name my-endpoint" in snippet
    assert "--query primaryKey --output tsv)" in snippet


def test_every_curl_snippet_is_valid_bash() -> None:
    for facts in (FACTS, AZURE, replace(FACTS, credential=KEY, deployment="blue")):
        result = subprocess.run(["bash", "-n", "-c", curl_snippet(facts)], check=False)
        assert result.returncode == 0, curl_snippet(facts)


def _python(facts: SnippetFacts) -> ast.Module:
    return ast.parse(python_snippet(facts))


def _assigned(module: ast.Module, name: str) -> ast.expr:
    for node in module.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == name:
            return node.value
    raise AssertionError(f"{name} is not assigned")


def test_python_reads_the_key_from_the_environment_until_it_is_given() -> None:
    placeholder = python_snippet(FACTS)
    assert 'api_key = os.environ["ENDPOINT_KEY"]' in placeholder
    assert KEY not in placeholder
    shown = replace(FACTS, credential=KEY)
    assert ast.literal_eval(_assigned(_python(shown), "api_key")) == KEY
    assert "import os" not in python_snippet(shown)


def test_python_sends_the_same_json_and_trusts_the_emulators_ca() -> None:
    module = _python(FACTS)
    assert ast.literal_eval(_assigned(module, "data")) == json.loads(BODY)
    assert "ssl.create_default_context(cafile=" in python_snippet(FACTS)
    assert "ssl" not in python_snippet(AZURE)


def test_python_has_the_deployment_header_commented_out_unless_a_deployment_is_chosen() -> None:
    routed = python_snippet(FACTS)
    assert '# headers["azureml-model-deployment"] = "blue"' in routed
    chosen = python_snippet(replace(FACTS, deployment="green"))
    assert '\nheaders["azureml-model-deployment"] = "green"\n' in chosen


def test_az_cli_invokes_with_the_request_saved_first() -> None:
    snippet = az_cli_snippet(replace(FACTS, deployment="green"))
    lines = snippet.splitlines()
    assert lines[0] == f"cat > {REQUEST_FILE} <<'REQUEST_JSON'"
    assert json.loads(lines[1]) == json.loads(BODY)
    words = _words("\n".join(lines[3:]))
    assert words[:5] == ["az", "ml", "online-endpoint", "invoke", "--name"]
    assert _value_after(words, "--deployment-name") == ["green"]
    assert _value_after(words, "--resource-group") == ["rg"]
    assert "# To send to one deployment only, add:  --deployment-name blue" in az_cli_snippet(FACTS)


def test_a_long_body_is_read_from_a_file_rather_than_written_out() -> None:
    long = replace(FACTS, body=json.dumps({"data": [list(range(50))] * 40}))
    assert len(long.body) > INLINE_BODY_LIMIT
    assert _value_after(_words(curl_snippet(long)), "--data") == [f"@{REQUEST_FILE}"]
    assert f'open("{REQUEST_FILE}")' in python_snippet(long)
    assert "REQUEST_JSON" not in az_cli_snippet(long)


def test_the_credentials_command_asks_for_what_the_auth_mode_uses() -> None:
    assert credentials_command(FACTS).endswith("--query primaryKey --output tsv")
    token = credentials_command(replace(FACTS, auth_mode="aml_token"))
    assert token.startswith("az ml online-endpoint get-credentials --name my-endpoint")
    assert token.endswith("--query accessToken --output tsv")
    aad = credentials_command(replace(FACTS, auth_mode="aad_token"))
    assert aad.startswith("az account get-access-token --resource https://ml.azure.com")
