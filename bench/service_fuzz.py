"""Property-based fuzzing of a running OpenScholar API from its own OpenAPI spec: no 5xx, ever.

schemathesis generates requests for every operation (valid and edge-case bodies, paths, headers);
every response must be below 500. Loopback only.

    openscholar keys create fuzz              # -> KEY
    python bench/service_fuzz.py --url http://127.0.0.1:8080 --key KEY --examples 100
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from typing import Any


def fuzz(url: str, key: str, examples: int, seed: int = 0) -> dict[str, Any]:
    """Run ``examples`` generated requests per operation; returns counts by status and any 5xx."""
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
    return {"requests": sum(statuses.values()), "seconds": round(time.perf_counter() - start, 1),
            "by_status": dict(sorted(statuses.items())), "per_operation": per_op, "server_errors": failures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--key", required=True)
    parser.add_argument("--examples", type=int, default=100, help="Generated requests per operation.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    report = fuzz(args.url, args.key, args.examples, args.seed)
    print(json.dumps(report, indent=2))
    sys.exit(1 if report["server_errors"] else 0)


if __name__ == "__main__":
    main()
