"""How a client calls an endpoint: its credentials, masked, and ready snippets (curl, Python,
az CLI), as Azure ML studio's Consume tab gives them.

The snippets are plain text built here from plain values, so that they can be tested alone
and run for real. By default they read the credential from an environment variable
(`$ENDPOINT_KEY`, `os.environ["ENDPOINT_KEY"]`); the credential itself goes in only when
the caller passes it (the user asked to see it). A workspace whose TLS certificate is signed
by a CA of its own (the local emulator) gets `--cacert` / an SSL context for that CA.
"""

from __future__ import annotations

import json
import pprint
import shlex
from dataclasses import dataclass

from rollout.endpoints import service_call
from rollout.errors import ServiceError
from rollout.invoke import DEPLOYMENT_HEADER
from rollout.workspace import Workspace

# A request body longer than this is not written into the snippets: they read request.json.
INLINE_BODY_LIMIT = 4000
REQUEST_FILE = "request.json"
MASK = "•" * 8
_TOKEN_MODES = ("aml_token", "aad_token")
# Where Microsoft Entra tokens for Azure ML endpoints are issued for.
_AAD_RESOURCE = "https://ml.azure.com"


@dataclass(frozen=True)
class ScoringAuth:
    """What a client presents to score: the endpoint's two keys, or a token that expires.

    `primary` is the primary key, or the token; `expires_at` is epoch seconds (tokens only).
    """

    mode: str
    primary: str | None = None
    secondary: str | None = None
    expires_at: float | None = None

    @property
    def uses_keys(self) -> bool:
        return self.mode not in _TOKEN_MODES

    @property
    def credential(self) -> str | None:
        """What goes after `Bearer `: the primary key, or the token."""
        return self.primary


def get_scoring_auth(ws: Workspace, endpoint: str, auth_mode: str) -> ScoringAuth:
    """The endpoint's keys (key auth) or a token for it (aml_token, aad_token): one read of
    the keys (azure-ai-ml first reads the endpoint to learn its auth mode)."""
    creds = service_call(
        f"reading the keys of '{endpoint}'",
        lambda: ws.ml_client.online_endpoints.get_keys(endpoint),
    )
    if hasattr(creds, "primary_key"):
        primary, secondary = creds.primary_key, creds.secondary_key
        if not primary:
            raise ServiceError(f"endpoint '{endpoint}' returned no keys")
        return ScoringAuth("key", str(primary), str(secondary) if secondary else None)
    token = getattr(creds, "access_token", None)
    if not token:
        raise ServiceError(f"endpoint '{endpoint}' returned no token")
    expiry = getattr(creds, "expiry_time_utc", None)
    mode = auth_mode.lower() if auth_mode.lower() in _TOKEN_MODES else "aml_token"
    return ScoringAuth(mode, str(token), expires_at=float(expiry) if expiry else None)


def mask_secret(secret: str) -> str:
    """A secret as it may be shown before the user asks to see it: `abcd••••••••wxyz` for a
    key or token (enough to tell two apart), only dots for anything short enough that eight
    characters would give much of it away."""
    if len(secret) >= 24:
        return secret[:4] + MASK + secret[-4:]
    return MASK


def env_var(auth_mode: str) -> str:
    """The environment variable the snippets read the credential from."""
    return "ENDPOINT_TOKEN" if auth_mode.lower() in _TOKEN_MODES else "ENDPOINT_KEY"


@dataclass(frozen=True)
class SnippetFacts:
    """Everything a snippet says: where, how to authenticate, what to send.

    `credential` is None for the placeholder (read from `env_var`); `deployment` is None to
    let the endpoint's traffic decide (the header is then a comment); `ca_cert` is the CA
    file to trust, None for a publicly trusted certificate (Azure)."""

    endpoint: str
    scoring_uri: str
    auth_mode: str
    body: str
    resource_group: str
    workspace_name: str
    deployment: str | None = None
    deployments: tuple[str, ...] = ()
    ca_cert: str | None = None
    credential: str | None = None
    on_azure: bool = True

    @property
    def var(self) -> str:
        return env_var(self.auth_mode)

    @property
    def inline(self) -> bool:
        return len(self.body) <= INLINE_BODY_LIMIT

    @property
    def example_deployment(self) -> str:
        """The deployment named in the commented-out header."""
        return self.deployment or (self.deployments[0] if self.deployments else "blue")


def compact_body(text: str) -> str:
    """A JSON body on one line (what is sent is the same JSON)."""
    return json.dumps(json.loads(text), separators=(",", ":"))


def credentials_command(facts: SnippetFacts) -> str:
    """The az CLI command that prints the credential the snippets need."""
    if facts.auth_mode.lower() == "aad_token":
        return (
            f"az account get-access-token --resource {_AAD_RESOURCE} "
            "--query accessToken --output tsv"
        )
    query = "primaryKey" if facts.var == "ENDPOINT_KEY" else "accessToken"
    return (
        f"az ml online-endpoint get-credentials --name {shlex.quote(facts.endpoint)} "
        f"--resource-group {shlex.quote(facts.resource_group)} "
        f"--workspace-name {shlex.quote(facts.workspace_name)} "
        f"--query {query} --output tsv"
    )


def _what_the_credential_is(facts: SnippetFacts) -> str:
    if facts.var == "ENDPOINT_KEY":
        return "the endpoint's primary key"
    return "a token for the endpoint (it expires: get a new one when calls return 401)"


def _shell_credential_lines(facts: SnippetFacts) -> list[str]:
    if facts.credential is not None:
        return [f"{facts.var}={shlex.quote(facts.credential)}"]
    if facts.on_azure:
        return [
            f"# {facts.var}: {_what_the_credential_is(facts)}",
            f"{facts.var}=$({credentials_command(facts)})",
        ]
    return [
        f"# {facts.var}: {_what_the_credential_is(facts)}; set it first (Show key in the "
        "dashboard), e.g.",
        f"#   export {facts.var}='...'",
    ]


def curl_snippet(facts: SnippetFacts) -> str:
    """A curl command that scores the request (bash)."""
    lines = _shell_credential_lines(facts)
    if not facts.inline:
        lines.append(f"# the request body is in {REQUEST_FILE}")
    command = [
        f"curl --request POST {shlex.quote(facts.scoring_uri)}",
        *([f"--cacert {shlex.quote(facts.ca_cert)}"] if facts.ca_cert else []),
        f'--header "Authorization: Bearer ${facts.var}"',
        "--header 'Content-Type: application/json'",
        *(
            [f"--header {shlex.quote(f'{DEPLOYMENT_HEADER}: {facts.deployment}')}"]
            if facts.deployment
            else []
        ),
        (
            f"--data {shlex.quote(compact_body(facts.body))}"
            if facts.inline
            else f"--data @{REQUEST_FILE}"
        ),
    ]
    lines.append(" \\\n  ".join(command))
    if not facts.deployment:
        lines += [
            "# To send to one deployment only (the endpoint's traffic split is then skipped),",
            "# add:  --header " + shlex.quote(f"{DEPLOYMENT_HEADER}: {facts.example_deployment}"),
        ]
    return "\n".join(lines) + "\n"


def _python_body(facts: SnippetFacts) -> list[str]:
    if not facts.inline:
        return [f'with open("{REQUEST_FILE}") as f:', "    data = json.load(f)"]
    literal = pprint.pformat(json.loads(facts.body), width=88, compact=True, sort_dicts=False)
    return [f"data = {literal}"]


def python_snippet(facts: SnippetFacts) -> str:
    """A Python script (standard library only) that scores the request and prints the answer."""
    needs_os = facts.credential is None
    imports = ["import json", *(["import os"] if needs_os else [])]
    imports += [*(["import ssl"] if facts.ca_cert else []), "import urllib.error"]
    imports.append("import urllib.request")
    credential = (
        f'os.environ["{facts.var}"]  # {_what_the_credential_is(facts)}'
        if facts.credential is None
        else json.dumps(facts.credential)
    )
    header = f'headers["{DEPLOYMENT_HEADER}"] = {json.dumps(facts.example_deployment)}'
    lines = [
        *imports,
        "",
        f"url = {json.dumps(facts.scoring_uri)}",
        f"api_key = {credential}",
        *(
            [f"# {facts.var} comes from: {credentials_command(facts)}"]
            if facts.credential is None and facts.on_azure
            else []
        ),
        *_python_body(facts),
        "",
        "headers = {",
        '    "Content-Type": "application/json",',
        '    "Authorization": f"Bearer {api_key}",',
        "}",
    ]
    if facts.deployment:
        lines += ["# Sent to this deployment only (the endpoint's traffic split is skipped):"]
        lines += [header]
    else:
        lines += [
            "# To send to one deployment only (the endpoint's traffic split is then skipped):",
            f"# {header}",
        ]
    if facts.ca_cert:
        lines += [
            "",
            "# The local emulator's certificate is signed by its own CA:",
            f"context = ssl.create_default_context(cafile={json.dumps(facts.ca_cert)})",
        ]
    context = ", context=context" if facts.ca_cert else ""
    lines += [
        "",
        'request = urllib.request.Request(url, json.dumps(data).encode(), headers, method="POST")',
        "try:",
        f"    with urllib.request.urlopen(request{context}, timeout=90) as response:",
        "        print(response.read().decode())",
        "except urllib.error.HTTPError as error:",
        '    print(f"The request failed with status code {error.code}")',
        "    print(error.headers)",
        "    print(error.read().decode())",
        "    raise SystemExit(1)",
    ]
    return "\n".join(lines) + "\n"


def az_cli_snippet(facts: SnippetFacts) -> str:
    """`az ml online-endpoint invoke` (it finds the credential itself), request body saved
    first as request.json."""
    lines = []
    if facts.inline:
        lines += [
            f"cat > {REQUEST_FILE} <<'REQUEST_JSON'",
            compact_body(facts.body),
            "REQUEST_JSON",
        ]
    else:
        lines.append(f"# the request body is in {REQUEST_FILE}")
    command = [
        f"az ml online-endpoint invoke --name {shlex.quote(facts.endpoint)}",
        f"--request-file {REQUEST_FILE}",
        *([f"--deployment-name {shlex.quote(facts.deployment)}"] if facts.deployment else []),
        f"--resource-group {shlex.quote(facts.resource_group)}",
        f"--workspace-name {shlex.quote(facts.workspace_name)}",
    ]
    lines.append(" \\\n  ".join(command))
    if not facts.deployment:
        lines += [
            "# To send to one deployment only, add:  --deployment-name "
            + shlex.quote(facts.example_deployment)
        ]
    return "\n".join(lines) + "\n"
