"""An HTTP hook action (`[hooks] name = { url = "..." }` in sut.toml): one bounded request, its body as output.

Started by the campaign's hook runner as `python -m drimcheck.http_hook METHOD URL TIMEOUT verify|no-verify`
(config.HttpHook.command): the runner keeps its time limit, process group, evidence and failure rules. POST and
PUT send `{"hook": NAME, "study_uid": UID?}` as JSON (DRIMCHECK_HOOK, DRIMCHECK_STUDY_UID of the runner);
nothing else of the harness's environment leaves the machine. Exit 0 for a 2xx answer (its body, at most
MAX_BODY bytes, on stdout), 1 otherwise (the status or the transport error on stderr, in French).
"""

from __future__ import annotations

import json
import os
import sys

MAX_BODY = 1024 * 1024


def main(argv: list[str]) -> int:
    import httpx

    if len(argv) != 4:
        print("utilisation : python -m drimcheck.http_hook MÉTHODE URL DÉLAI verify|no-verify", file=sys.stderr)
        return 2
    method, url, timeout_text, verify_text = argv
    timeout = float(timeout_text)
    payload = {"hook": os.environ.get("DRIMCHECK_HOOK", "")}
    if os.environ.get("DRIMCHECK_STUDY_UID"):
        payload["study_uid"] = os.environ["DRIMCHECK_STUDY_UID"]
    body = json.dumps(payload).encode() if method in ("POST", "PUT") else None
    headers = {"Content-Type": "application/json"} if body is not None else {}
    received = bytearray()
    try:
        with httpx.Client(timeout=timeout, verify=verify_text == "verify", follow_redirects=False) as client:
            with client.stream(method, url, content=body, headers=headers) as response:
                for chunk in response.iter_bytes():
                    received += chunk
                    if len(received) > MAX_BODY:
                        print(f"réponse de plus de {MAX_BODY} octets : coupée", file=sys.stderr)
                        break
                status = response.status_code
    except httpx.HTTPError as exc:
        print(f"requête {method} {url} en échec : {type(exc).__name__} {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(bytes(received[:MAX_BODY]).decode("utf-8", "replace"))
    if not 200 <= status < 300:
        print(f"{method} {url} : réponse HTTP {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
