"""Property-based fuzzing of a running OpenScholar API from its own OpenAPI spec: no 5xx, ever.

schemathesis generates requests for every operation (valid and edge-case bodies, paths, headers),
then runs stateful scenarios that follow the spec's links (create a batch -> read it, its first job,
its results, cancel it; create a job -> read, stream, cancel it); every response must be below 500
(503 is reported too). Loopback only. The count is printed and saved (bench/results/service_fuzz.json).

    openscholar keys create fuzz              # -> KEY
    python bench/service_fuzz.py --url http://127.0.0.1:8080 --key KEY --examples 100 --scenarios 60
The slow test tests/api/test_fuzz.py::test_fuzz_many runs >= 1,000 cases against a test deployment.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from typing import Any


def fuzz(url: str, key: str, examples: int, seed: int = 0, scenarios: int = 0, steps: int = 6) -> dict[str, Any]:
    """``examples`` generated requests per operation, then ``scenarios`` stateful runs of up to ``steps``
    linked calls; returns counts by status and any 5xx."""
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed

    if not url.startswith(("http://127.", "http://localhost", "http://[::1]")):
        raise SystemExit("refusing to fuzz a non-loopback address")
    schema = schemathesis.openapi.from_url(url.rstrip("/") + "/openapi.json")
    statuses: collections.Counter[int] = collections.Counter()
    per_op: dict[str, int] = {}
    failures: list[dict[str, Any]] = []
    headers = {"Authorization": f"Bearer {key}"}
    start = time.perf_counter()
    for result in schema.get_all_operations():
        op = result.ok()
        label = f"{op.method.upper()} {op.path}"
        n = [0]

        @hseed(seed)
        @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy())
        def run(case: Any) -> None:
            resp = case.call(base_url=url, headers=headers, timeout=60)
            statuses[resp.status_code] += 1
            n[0] += 1
            if resp.status_code >= 500 and resp.status_code != 503:
                failures.append({"op": label, "status": resp.status_code, "body": resp.text[:300],
                                 "request": case.as_curl_command(headers=headers)[:500]})
            elif resp.status_code == 503:
                failures.append({"op": label, "status": 503, "body": resp.text[:300]})

        run()
        per_op[label] = n[0]
    stateful = _stateful(schema, url, headers, scenarios, steps, seed, statuses, failures) if scenarios else {}
    return {"requests": sum(statuses.values()), "seconds": round(time.perf_counter() - start, 1),
            "by_status": dict(sorted(statuses.items())), "per_operation": per_op, "stateful": stateful,
            "server_errors": failures}


def _stateful(schema: Any, url: str, headers: dict[str, str], scenarios: int, steps: int, seed: int,
              statuses: collections.Counter[int], failures: list[dict[str, Any]]) -> dict[str, Any]:
    """Scenarios that follow the OpenAPI links (batch -> its jobs, results, cancel; job -> events)."""
    from hypothesis import HealthCheck, Phase, settings

    calls: collections.Counter[str] = collections.Counter()
    linked = [0]

    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"base_url": url, "headers": headers, "timeout": 60}

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            label = f"{case.operation.method.upper()} {case.operation.path}"
            statuses[response.status_code] += 1
            calls[label] += 1
            if "{" in case.operation.path and response.status_code < 400:
                linked[0] += 1  # a call whose id came from an earlier response
            if response.status_code >= 500:
                failures.append({"op": label, "status": response.status_code, "body": response.text[:300],
                                 "stateful": True})

    # A live server answers differently when a scenario is replayed (jobs finish meanwhile), which
    # Hypothesis reports as a flaky strategy: run short rounds and start a new round when that happens.
    from hypothesis.errors import FlakyStrategyDefinition

    done, rounds, restarted = 0, 0, 0
    while done < scenarios:
        n = min(10, scenarios - done)
        rounds += 1
        try:
            Machine.run(settings=settings(max_examples=n, stateful_step_count=steps, deadline=None, database=None,
                                          phases=[Phase.generate], suppress_health_check=list(HealthCheck)))
        except FlakyStrategyDefinition:
            restarted += 1
        done += n
    return {"scenarios": scenarios, "rounds": rounds, "rounds_cut_short": restarted, "calls": sum(calls.values()),
            "linked_calls_ok": linked[0], "per_operation": dict(calls)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--key", required=True)
    parser.add_argument("--examples", type=int, default=100, help="Generated requests per operation.")
    parser.add_argument("--scenarios", type=int, default=60, help="Stateful scenarios (following the spec's links).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench/results/service_fuzz.json")
    args = parser.parse_args()
    report = fuzz(args.url, args.key, args.examples, args.seed, scenarios=args.scenarios)
    print(json.dumps(report, indent=2))
    if args.out:
        from pathlib import Path

        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2))
    sys.exit(1 if report["server_errors"] else 0)


if __name__ == "__main__":
    main()
