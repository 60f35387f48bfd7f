"""Hooks and set-up for scripts/fuzz (schemathesis against a running latchkey).

As a schemathesis hook module (SCHEMATHESIS_HOOKS=fuzz_hooks): the fuzzer
must never take its own admin's access away, which would deny its token and
leave the admin API untested for the rest of the run. Stateful testing
follows links (list users, then reset that user's password or end that
session), so:
  - every bulk session revocation is pinned to the decoy user;
  - a path naming the admin (user id) or the admin's session is pointed at
    the decoy, or at a session that does not exist.

As a script:
  fuzz_hooks.py setup          sign in the admin and the decoy; print shell
                               assignments FUZZ_ADMIN_TOKEN and FUZZ_DECOY_USER_ID
  fuzz_hooks.py still-admin T  exit 0 if token T still works on the admin API
"""

import base64
import json
import os
import secrets
import sys
import urllib.request


def _call(method, path, body=None, token=None):
    url = os.environ["FUZZ_URL"] + path
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(req) as resp:
        return json.loads(resp.read() or b"null")


def setup():
    admin = _call(
        "POST",
        "/auth/login",
        {"username": "fuzz-admin", "password": os.environ["FUZZ_ADMIN_PASSWORD"], "scope": "openid latchkey:admin"},
    )
    password = secrets.token_urlsafe(18)
    _call("POST", "/auth/register", {"username": "fuzz-decoy", "password": password})
    decoy = _call("POST", "/auth/login", {"username": "fuzz-decoy", "password": password})
    decoy_me = _call("GET", "/auth/me", token=decoy["access_token"])
    admin_me = _call("GET", "/auth/me", token=admin["access_token"])
    claims = admin["access_token"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    print(f"FUZZ_ADMIN_TOKEN='{admin['access_token']}'")
    print(f"FUZZ_ADMIN_USER_ID='{admin_me['id']}'")
    print(f"FUZZ_ADMIN_SESSION_ID='{claims['sid']}'")
    print(f"FUZZ_DECOY_USER_ID='{decoy_me['id']}'")


def still_admin(token):
    try:
        _call("GET", "/admin/users?limit=1", token=token)
        return 0
    except Exception as e:  # noqa: BLE001 - any failure means no access
        print(f"admin API refused the fuzzer's token: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    if sys.argv[1] == "setup":
        setup()
    elif sys.argv[1] == "still-admin":
        sys.exit(still_admin(sys.argv[2]))
    sys.exit(0)
else:
    import schemathesis

    import uuid

    @schemathesis.hook
    def before_call(ctx, case, **kwargs):
        decoy = os.environ["FUZZ_DECOY_USER_ID"]
        if case.operation.path == "/admin/sessions/revoke" and case.method.upper() == "POST":
            if isinstance(case.body, dict):
                case.body["user_id"] = decoy
        params = case.path_parameters or {}
        for name, value in params.items():
            if str(value).lower() == os.environ["FUZZ_ADMIN_USER_ID"]:
                params[name] = decoy
            elif str(value).lower() == os.environ["FUZZ_ADMIN_SESSION_ID"]:
                params[name] = str(uuid.uuid4())
