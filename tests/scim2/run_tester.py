"""Runs scim2-tester's checks against a SCIM server and prints one JSON line per check.

Usage: run_tester.py BASE_URL (the bearer token comes from the SCIM_TOKEN variable).
The Rust test (tests/e2e/scim.rs) reads the lines and decides which statuses pass.
"""

import json
import os
import sys

from httpx2 import Client
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import check_server


def main() -> int:
    base_url = sys.argv[1]
    token = os.environ["SCIM_TOKEN"]
    http = Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"})
    client = SyncSCIMClient(http)
    for result in check_server(client):
        print(
            json.dumps(
                {
                    "status": result.status.name,
                    "title": result.title,
                    "resource_type": result.resource_type,
                    "reason": None if result.reason is None else str(result.reason)[:500],
                }
            ),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
