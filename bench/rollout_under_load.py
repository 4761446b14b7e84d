"""A rollout under load, as a new user would try it (issue 3's "done when").

Against `make run`'s emulator (state dir `.emulator`, or --state-dir): clients send the
sample request to my-endpoint for --duration seconds while traffic goes 90/10 -> 50/50
-> 100/0, blue is scaled 1 -> 2 -> 1 and one of blue's instances is killed. Prints what
each deployment served, by status, and the number of non-200 answers. Bounded in time,
127.0.0.1 only. Leaves my-endpoint at blue 100%, green deployed at 0%.

    .venv/bin/python -m bench.rollout_under_load [--state-dir .emulator] [--clients 2]
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil

from emulator.apply import apply_file
from rollout.workspace import connect_emulator

REPO = Path(__file__).resolve().parent.parent
ENDPOINT = "my-endpoint"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, default=REPO / ".emulator")
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--duration", type=float, default=40.0)
    args = parser.parse_args()

    apply_file(args.state_dir, REPO / "examples" / "green-deployment.yml", if_missing=True)
    ws = connect_emulator(args.state_dir)
    ml = ws.ml_client
    uri = ml.online_endpoints.get(ENDPOINT).scoring_uri
    key = ml.online_endpoints.get_keys(ENDPOINT).primary_key
    body = (REPO / "examples" / "sample-request.json").read_bytes()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    stop = time.monotonic() + args.duration
    served: Counter[tuple[str, int]] = Counter()
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(verify=ws.verify, timeout=30) as http:
            while time.monotonic() < stop:
                r = http.post(uri, content=body, headers=headers)
                with lock:
                    served[(r.headers.get("azureml-model-deployment", "-"), r.status_code)] += 1

    def say(what: str) -> None:
        print(f"{time.strftime('%X')} {what}", flush=True)

    def traffic(live: dict[str, int]) -> None:
        endpoint = ml.online_endpoints.get(ENDPOINT)
        endpoint.traffic, endpoint.mirror_traffic = live, {}
        ml.online_endpoints.begin_create_or_update(endpoint).result()
        say(f"traffic {live}")

    def scale(count: int) -> None:
        blue = ml.online_deployments.get("blue", ENDPOINT)
        blue.instance_count = count
        ml.online_deployments.begin_create_or_update(blue).result()
        say(f"blue scaled to {count}")

    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    for t in threads:
        t.start()
    steps = [
        lambda: traffic({"blue": 90, "green": 10}),
        lambda: scale(2),
        lambda: _kill_one_blue_instance(args.state_dir, say),
        lambda: traffic({"blue": 50, "green": 50}),
        lambda: traffic({"blue": 100, "green": 0}),
        lambda: scale(1),
    ]
    pause = args.duration / (len(steps) + 1)
    for step in steps:
        time.sleep(pause)
        step()
    for t in threads:
        t.join()
    for (deployment, status), n in sorted(served.items()):
        print(f"{deployment:>8} {status}: {n}")
    failed = sum(n for (_, status), n in served.items() if status != 200)
    print(f"non-200: {failed} of {sum(served.values())}")


def _kill_one_blue_instance(state_dir: Path, say: Callable[[str], None]) -> None:
    pid = int(json.loads((state_dir / "server.json").read_text())["pid"])
    victims = [
        p
        for p in psutil.Process(pid).children()
        if "emulator.worker" in p.cmdline() and any(f"/{ENDPOINT}-blue-" in a for a in p.cmdline())
    ]
    say(f"killing blue instance pid {victims[0].pid} (of {len(victims)})")
    victims[0].kill()


if __name__ == "__main__":
    main()
