"""Drive latchkey through a client generated from openapi/openapi.json.

Run by scripts/generated-client-test: register -> login -> me -> refresh ->
logout, asserting real responses, including the typed error bodies.
"""

import sys
import uuid

from latchkey_client import Client
from latchkey_client.api.auth import get_me, login, logout, refresh, register
from latchkey_client.api.discovery import get_openid_configuration
from latchkey_client.api.operations import get_readyz
from latchkey_client.models import (
    ErrorBody,
    LoginRequest,
    RefreshTokenRequest,
    RegisterRequest,
    TokenResponse,
    UserView,
)


def main(base_url: str) -> None:
    client = Client(base_url=base_url, raise_on_unexpected_status=True)

    ready = get_readyz.sync(client=client)
    assert ready is not None and ready.status == "ok", ready

    discovery = get_openid_configuration.sync(client=client)
    assert discovery is not None and discovery.issuer == base_url, discovery

    username = f"py-{uuid.uuid4().hex[:8]}"
    password = "correct horse battery staple"

    user = register.sync(client=client, body=RegisterRequest(username=username, password=password))
    assert isinstance(user, UserView), user
    assert user.username == username and user.roles == []

    duplicate = register.sync(client=client, body=RegisterRequest(username=username.upper(), password=password))
    assert isinstance(duplicate, ErrorBody) and duplicate.error == "username_taken", duplicate

    wrong = login.sync(client=client, body=LoginRequest(username=username, password="wrong password"))
    assert isinstance(wrong, ErrorBody) and wrong.error == "invalid_credentials", wrong

    tokens = login.sync(client=client, body=LoginRequest(username=username, password=password))
    assert isinstance(tokens, TokenResponse), tokens
    assert tokens.token_type == "Bearer" and tokens.expires_in > 0 and tokens.refresh_token

    authed = Client(base_url=base_url, headers={"Authorization": f"Bearer {tokens.access_token}"})
    me = get_me.sync(client=authed)
    assert isinstance(me, UserView) and me.id == user.id, me

    rotated = refresh.sync(client=client, body=RefreshTokenRequest(refresh_token=tokens.refresh_token))
    assert isinstance(rotated, TokenResponse), rotated
    assert rotated.refresh_token and rotated.refresh_token != tokens.refresh_token

    response = logout.sync_detailed(client=client, body=RefreshTokenRequest(refresh_token=rotated.refresh_token))
    assert response.status_code == 204, response

    after = refresh.sync(client=client, body=RefreshTokenRequest(refresh_token=rotated.refresh_token))
    assert isinstance(after, ErrorBody) and after.error == "invalid_refresh_token", after

    print(f"generated Python client: register, login, me, refresh, logout OK against {base_url}")


if __name__ == "__main__":
    main(sys.argv[1])
