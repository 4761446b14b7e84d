"""The inference server's contract, proven against Microsoft's own server.

Each score.py in fixtures/contract is served twice, in one environment built by the
emulator's environment builds (its conda file holds azureml-inference-server-http,
numpy and pandas): by `azmlinfsrv` itself, and by the emulator's worker. Both get the
same requests, and status, body and the headers Azure documents must be the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.servers import Azmlinfsrv, BenchError
from emulator.conda_env import read_conda_file
from emulator.env_builds import BuildFailed, EnvironmentBuilds
from tests.conftest import REPO

FIXTURES = Path(__file__).parent / "fixtures"
CONTRACT = FIXTURES / "contract"
MODEL = CONTRACT / "model"
JSON = {"content-type": "application/json"}
LONG_ID = "x" * 101


@dataclass(frozen=True)
class Ask:
    """One request, sent the same to both servers."""

    method: str
    path: str = "/score"
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def post(body: bytes | str, **headers: str) -> Ask:
        data = body.encode() if isinstance(body, str) else body
        return Ask("POST", content=data, headers={**JSON, **headers})


COMMON = [
    Ask("GET", "/"),
    Ask("GET", "/nope"),
    Ask("PUT", content=b"{}", headers=JSON),
    Ask("OPTIONS"),
    Ask("POST", "/swagger.json"),
    Ask("GET", "/swagger.json"),
    Ask("GET", "/swagger.json?version=3"),
    Ask("GET", "/swagger.json?version=3.1"),
    Ask("GET", "/swagger.json?version=2.0"),
    Ask("GET", "/swagger.json?version=9"),
    Ask.post("{}", **{"x-request-id": "client-id-1"}),
    Ask.post("{}", **{"x-ms-client-request-id": "client-2"}),
    Ask.post("{}", **{"x-ms-request-id": "legacy-3"}),
    Ask.post("{}", **{"x-request-id": LONG_ID}),
    Ask.post("{}", **{"x-ms-client-request-id": LONG_ID}),
]

CASES: dict[str, list[Ask]] = {
    "plain.py": [
        Ask.post('{"data": [[1, 2, 3]]}'),
        Ask.post('{"data": [[1, 2,'),  # malformed: run()'s json.loads raises
        Ask.post(b"\xff\xfe not utf-8"),
        Ask.post('{"fail": true}'),
        Ask.post('{"bytes": true}'),
        Ask.post('{"array": true}'),
        Ask.post('{"text": true}'),
        Ask.post('{"none": true}'),
        Ask.post("[1, 2]", **{"content-type": "text/plain"}),
        Ask("GET", "/score?a=1&b=[1,2]&c=x&c=y&d=null"),
        Ask("GET", "/score"),
    ],
    "schema_numpy.py": [
        Ask.post('{"data": [[1, 2, 3], [4, 5, 6]], "factor": 3}'),
        Ask.post('{"data": [[1, 2, 3]]}'),
        Ask.post('{"factor": 3}'),
        Ask.post('{"data": "not an array"}'),
        Ask.post("[1, 2]"),
        Ask.post(""),
        Ask.post("{oops"),
        Ask.post('{"data": [[1, 2, 3]]}', **{"content-type": "text/plain"}),
        Ask.post('{"data": [[1, 2, 3]]}', **{"content-type": "application/vnd.api+json"}),
        Ask("GET", "/score?data=[[1,2,3]]&factor=2"),
    ],
    "schema_pandas.py": [
        Ask.post('{"frame": [{"a": 1, "b": 2.5}, {"a": 2, "b": 1}]}'),
        Ask.post('{"frame": [{"a": 1}]}'),
    ],
    "rawhttp.py": [
        Ask.post("hello"),
        Ask.post("teapot"),
        Ask.post("crash"),
        Ask("GET", "/score?x=1&x=2&y=3"),
        Ask("OPTIONS"),
    ],
    "headers.py": [
        Ask.post('{"a": 1}', **{"x-custom-header": "hi there"}),
        Ask("GET", "/score?q=1", headers={"x-custom-header": "get"}),
    ],
    "slow.py": [Ask.post("{}")],
}


@pytest.fixture(scope="module")
def env_python() -> Path:
    spec = read_conda_file((CONTRACT / "conda.yaml").read_text(), what="contract environment")
    lines: list[str] = []
    try:
        return asyncio.run(EnvironmentBuilds().python_for(spec, lines.append))
    except BuildFailed as exc:
        pytest.skip(f"azmlinfsrv's environment cannot be built here (uv, PyPI): {exc}")


class Worker:
    """The emulator's worker serving one script on a Unix socket, as an instance does."""

    def __init__(self, python: Path, code_dir: Path, script: str) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="bg-contract-", dir="/tmp"))
        self.socket = self.folder / "w.sock"
        self.log_path = self.folder / "worker.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [
                    str(python),
                    "-m",
                    "emulator.worker",
                    "--socket",
                    str(self.socket),
                    "--code-dir",
                    str(code_dir),
                    "--script",
                    script,
                    "--model-dir",
                    str(MODEL),
                    "--instance-id",
                    "contract-0",
                ],
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.client = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(self.socket)), base_url="http://instance"
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"the worker exited at start:\n{self.log_path.read_text()}")
            with contextlib.suppress(httpx.TransportError):
                if self.client.get("/").status_code == 200:
                    return
            time.sleep(0.1)
        raise BenchError(f"the worker was not ready after {timeout:.0f} s")

    def stop(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        shutil.rmtree(self.folder, ignore_errors=True)


@contextlib.contextmanager
def both(python: Path, code_dir: Path, script: str) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    log = Path(tempfile.mkdtemp(prefix="bg-azmlinfsrv-", dir="/tmp")) / "azmlinfsrv.log"
    reference = Azmlinfsrv(python, log)
    worker = Worker(python, code_dir, script)
    try:
        reference.start(code_dir=str(code_dir), script=script, model_dir=str(MODEL))
        worker.wait_ready()
        with httpx.Client(base_url=f"http://127.0.0.1:{reference.port}", timeout=30) as azure:
            yield azure, worker.client
    finally:
        worker.stop()
        reference.stop()
        shutil.rmtree(log.parent, ignore_errors=True)


def view(response: httpx.Response, ask: Ask) -> dict[str, Any]:
    """What is compared of an answer: status, body, and the documented headers."""
    headers = response.headers
    content_type = headers.get("content-type", "")
    body: Any = response.content
    if "json" in content_type and body:
        body = response.json()
    request_id = headers.get("x-request-id")
    if request_id and "x-request-id" not in ask.headers:
        uuid.UUID(request_id)  # made up by the server: a UUID, compared as such
        request_id = "<generated>"

    def as_id(name: str) -> str | None:
        value = headers.get(name)
        if value is not None and value == headers.get("x-request-id"):
            return "<the request id>"
        return value

    return {
        "status": response.status_code,
        "content-type": content_type,
        "body": body,
        "x-ms-run-function-failed": headers.get("x-ms-run-function-failed"),
        "x-ms-run-fn-exec-ms": "x-ms-run-fn-exec-ms" in headers,
        "x-request-id": request_id,
        "x-ms-request-id": as_id("x-ms-request-id"),
        "x-ms-client-request-id": as_id("x-ms-client-request-id"),
        "x-custom": headers.get("x-custom"),
    }


def compare(azure: httpx.Client, ours: httpx.Client, asks: list[Ask]) -> list[dict[str, Any]]:
    answers = []
    for ask in asks:
        expected = view(
            azure.request(ask.method, ask.path, content=ask.content, headers=ask.headers), ask
        )
        got = view(
            ours.request(ask.method, ask.path, content=ask.content, headers=ask.headers), ask
        )
        assert got == expected, f"{ask.method} {ask.path} {ask.content!r} {ask.headers}"
        answers.append(got)
    return answers


@pytest.mark.parametrize("script", sorted(CASES))
def test_the_worker_answers_as_azmlinfsrv_does(env_python: Path, script: str) -> None:
    with both(env_python, CONTRACT, script) as (azure, ours):
        answers = compare(azure, ours, CASES[script] + COMMON)
    # The comparison is not vacuous: each script's first request was served by run().
    assert answers[0]["x-ms-run-fn-exec-ms"] or script == "rawhttp.py"
    assert answers[0]["status"] in (200, 201)


def test_the_answers_carry_what_each_kind_of_script_promises(env_python: Path) -> None:
    with both(env_python, CONTRACT, "schema_numpy.py") as (_, ours):
        served = ours.post("/score", content=b'{"data": [[1, 2, 3]], "factor": 2}', headers=JSON)
        swagger = ours.get("/swagger.json?version=3").json()
    # inference-schema turned the list into an ndarray; its schema is in the Swagger
    assert served.json() == {"sums": [12.0], "kind": "ndarray"}
    assert swagger["openapi"].startswith("3.0")
    assert "data" in swagger["components"]["schemas"]["ServiceInput"]["properties"]
    with both(env_python, CONTRACT, "slow.py") as (_, ours):
        slow = ours.post("/score", content=b"{}", headers=JSON)
    assert float(slow.headers["x-ms-run-fn-exec-ms"]) >= 300


def test_swagger_documents_shipped_with_the_code_are_served(env_python: Path) -> None:
    with both(env_python, FIXTURES / "contract_swagger", "score.py") as (azure, ours):
        answers = compare(azure, ours, COMMON[5:10])
    assert answers[0]["body"]["info"]["title"] == "shipped v2"
    assert answers[1]["body"]["info"]["title"] == "shipped v3"
    # no swagger3.1.json: generated, with the empty schemas of an undecorated run()
    assert answers[2]["body"]["info"]["title"] == "ML service"
    assert answers[2]["body"]["components"]["schemas"]["ServiceInput"] == {
        "type": "object",
        "example": {},
    }


@pytest.mark.parametrize("script", ["no_init.py", "varargs.py", "init_raises.py"])
def test_a_script_the_server_refuses_fails_its_start_in_both(env_python: Path, script: str) -> None:
    log = Path(tempfile.mkdtemp(prefix="bg-azmlinfsrv-", dir="/tmp")) / "azmlinfsrv.log"
    reference = Azmlinfsrv(env_python, log)
    try:
        with pytest.raises(BenchError, match="exited at start"):
            reference.start(code_dir=str(CONTRACT), script=script, model_dir=str(MODEL), timeout=60)
    finally:
        reference.stop()
        shutil.rmtree(log.parent, ignore_errors=True)
    worker = Worker(env_python, CONTRACT, script)
    try:
        with pytest.raises(BenchError, match="exited at start"):
            worker.wait_ready()
        assert worker.process.returncode == 3
    finally:
        worker.stop()
