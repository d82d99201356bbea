"""The server's token: every route but the page's files answers 401 without it (every route of the app is
enumerated, so a new one cannot be left open by mistake), the right one opens them, it is compared in constant
time; where the token comes from and how a bad token file is refused; no open server beyond loopback unless
``--insecure``. The page asking for the token in a real browser is in test_browser.py."""

import logging
import os

import fastapi.routing
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from retrieval import build_index
from retrieval.cli.main import main
from retrieval.errors import SettingsError
from retrieval.server import ServerState, create_app, run
from retrieval.server.auth import check_exposure, token_from
from tests.conftest import GALLERY, RANDOM_WHOLE, copy_demo_images

TOKEN = "test-token-0123456789-abcdef"
NEEDS = "this server needs its token: send the header 'Authorization: Bearer <token>'"
NOT_OURS = "the token is not this server's: send the one in its --token-file (or $RETRIEVAL_TOKEN)"
SCENE = GALLERY / "scene_000.jpg"
# Every route of the app: (method, route path) → (the URL asked, request arguments, the status with the token).
# A route missing here fails test_every_route_needs_the_token: add it, and say whether it is open.
REQUESTS = {
    ("GET", "/api/health"): ("/api/health", {}, 200),
    ("GET", "/api/info"): ("/api/info", {}, 200),
    ("GET", "/api/images"): ("/api/images", {}, 200),
    ("GET", "/api/images/{image_id}"): ("/api/images/1", {}, 200),
    ("GET", "/api/images/{image_id}/picture"): ("/api/images/1/picture", {}, 200),
    ("GET", "/api/images/{image_id}/thumbnail"): ("/api/images/1/thumbnail", {}, 200),
    ("POST", "/api/query"): ("/api/query", {"data": {"image_id": "1", "top_k": "2"}}, 200),
    ("GET", "/api/objects/{object_id}/similar"): ("/api/objects/1/similar", {}, 200),
    ("POST", "/api/detect"): ("/api/detect", {"files": {"image": ("s.jpg", SCENE.read_bytes(), "image/jpeg")}}, 404),
    ("GET", "/openapi.json"): ("/openapi.json", {}, 200),
    ("GET", "/api/docs"): ("/api/docs", {}, 200),
    ("GET", "/docs/oauth2-redirect"): ("/docs/oauth2-redirect", {}, 200),
}
OPEN = {("GET", "/"): "/", ("GET", "/static"): "/static/app.js"}  # the page's own files: no index data


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    root = tmp_path_factory.mktemp("auth")
    copy_demo_images(root / "gallery", 3)
    build_index(root / "gallery", root / "index", RANDOM_WHOLE, progress=False)
    return root / "index"


@pytest.fixture(scope="module")
def app(index):
    return create_app(ServerState(index, device="cpu", token=TOKEN))


def routes(app) -> set[tuple[str, str]]:
    """``(method, path)`` of every route and mount of ``app`` (a mount as GET; HEAD left out: it goes with GET).

    Recent FastAPI keeps included routers nested in ``app.routes``; ``iter_route_contexts`` flattens them.
    """
    flatten = getattr(fastapi.routing, "iter_route_contexts", lambda routes: routes)
    found = set()
    for route in flatten(app.routes):
        methods = getattr(route, "methods", None) or {"GET"}
        found |= {(method, route.path) for method in methods - {"HEAD"}}
    return found


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_every_route_needs_the_token_and_the_right_one_opens_it(app):
    assert routes(app) == set(REQUESTS) | set(OPEN), "a route is new: add it to REQUESTS (or OPEN)"
    client = TestClient(app)
    for (method, _), (url, arguments, status) in REQUESTS.items():
        for headers, detail in (({}, NEEDS), (bearer("wrong-" + TOKEN), NOT_OURS), (bearer(TOKEN[:-1]), NOT_OURS)):
            answer = client.request(method, url, headers=headers, **arguments)
            assert answer.status_code == 401, (method, url, headers)
            assert answer.json() == {"detail": detail} and answer.headers["www-authenticate"] == "Bearer"
        basic = client.request(method, url, headers={"Authorization": f"Basic {TOKEN}"}, **arguments)
        assert basic.status_code == 401 and basic.json() == {
            "detail": "the Authorization header must read 'Bearer <token>'"
        }
        assert client.request(method, url, headers=bearer(TOKEN), **arguments).status_code == status, (method, url)
    assert client.get("/api/info", headers={"Authorization": f"bearer  {TOKEN}"}).status_code == 200  # RFC 6750
    for url in OPEN.values():
        assert client.get(url).status_code == 200, url
    assert "scene_000" not in client.get("/").text  # the page holds no index data: it asks the API, with the token


def test_what_is_no_route_needs_the_token_too_and_401_comes_before_the_upload_limit(app):
    client = TestClient(app)
    assert client.get("/api/nothing-here").status_code == 401 and client.get("/favicon.ico").status_code == 401
    assert client.get("/api/nothing-here", headers=bearer(TOKEN)).status_code == 404
    huge = {"Content-Length": str(10**9)}
    assert client.post("/api/query", headers=huge, content=b"").status_code == 401  # not even the limit is told
    assert client.post("/api/query", headers={**huge, **bearer(TOKEN)}, content=b"").status_code == 413


def test_the_token_is_compared_in_constant_time(app, monkeypatch):
    import hmac

    compared = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: compared.append((a, b)) or real(a, b))
    assert TestClient(app).get("/api/info", headers=bearer("x" * 30)).status_code == 401
    assert compared == [(b"x" * 30, TOKEN.encode())]


def test_a_server_without_a_token_stays_open_and_the_token_is_checked_before_the_index_loads(index, tmp_path):
    assert TestClient(create_app(ServerState(index, device="cpu"))).get("/api/info").status_code == 200
    with pytest.raises(SettingsError, match=r"^token holds only 5 characters: use 16 or more ASCII letters"):
        ServerState(tmp_path / "no-index", token="short")


def write_token(path, text, mode=0o600):
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return str(path)


def test_the_token_comes_from_the_file_else_the_variable(tmp_path, caplog):
    given = write_token(tmp_path / "token", f"  {TOKEN}\n")
    assert token_from(None, {}) is None
    assert token_from(None, {"RETRIEVAL_TOKEN": TOKEN}) == TOKEN
    with caplog.at_level(logging.INFO, logger="retrieval"):
        assert token_from(given, {"RETRIEVAL_TOKEN": "other-" + TOKEN}) == TOKEN  # the file wins
    assert f"using the token in --token-file {given}; $RETRIEVAL_TOKEN is ignored" in caplog.messages
    assert not any("can be read by every user" in message for message in caplog.messages)
    with pytest.raises(SettingsError, match=r"^\$RETRIEVAL_TOKEN is empty: use 16 or more"):
        token_from(None, {"RETRIEVAL_TOKEN": ""})


def test_a_token_file_other_users_can_read_works_with_a_warning(tmp_path, caplog):
    given = write_token(tmp_path / "token", TOKEN, mode=0o644)
    with caplog.at_level(logging.WARNING, logger="retrieval"):
        assert token_from(given, {}) == TOKEN
    assert caplog.messages == [f"--token-file {given} can be read by every user of this machine; chmod 600 {given}"]


def test_a_bad_token_file_is_one_line(tmp_path, monkeypatch):
    folder, pipe, dangling = tmp_path / "folder", tmp_path / "pipe", tmp_path / "dangling"
    folder.mkdir()
    os.mkfifo(pipe)  # reading it would block: it is refused before
    os.symlink(tmp_path / "nowhere", dangling)
    missing = tmp_path / "missing"
    make = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
    cases = {
        str(missing): f"--token-file {missing} does not exist: write a token into it ({make} > {missing})",
        str(dangling): f"--token-file {dangling} does not exist: write a token into it ({make} > {dangling})",
        str(folder): f"--token-file {folder} is not a file: give the file that holds the token",
        str(pipe): f"--token-file {pipe} is not a file: give the file that holds the token",
        "": "--token-file '' names no file: give the file that holds the token",
        write_token(tmp_path / "empty", "\n"): f"--token-file {tmp_path / 'empty'} is empty: use 16 or more",
        write_token(tmp_path / "short", "abc\n"): f"--token-file {tmp_path / 'short'} holds only 3 characters",
        write_token(tmp_path / "words", f"{TOKEN} {TOKEN}"): f"--token-file {tmp_path / 'words'} holds spaces",
        write_token(tmp_path / "ü", f"{TOKEN}ü"): f"--token-file {tmp_path / 'ü'} is not an ASCII text file",
    }
    for path, message in cases.items():
        with pytest.raises(SettingsError) as raised:
            token_from(path, {})
        assert str(raised.value).startswith(message) and "\n" not in str(raised.value), path
        assert TOKEN not in str(raised.value)  # a message never shows the token

    def unreadable(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    given = write_token(tmp_path / "locked", TOKEN)
    with monkeypatch.context() as patched, pytest.raises(SettingsError) as raised:
        patched.setattr("builtins.open", unreadable)  # root reads any file: the refusal is simulated
        token_from(given, {})
    assert str(raised.value) == f"--token-file {given} cannot be read (Permission denied); check its permissions"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.0.1", "::1", "localhost"])
def test_loopback_needs_no_token(host):
    check_exposure(host, None, insecure=False)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "fe80::1", "example.org", "localhost.evil"])
def test_an_address_others_reach_needs_a_token_or_insecure(host):
    with pytest.raises(SettingsError) as raised:
        check_exposure(host, None, insecure=False)
    assert str(raised.value) == (
        f"--host {host} can be reached from other machines and the server has no token: give --token-file F "
        "(or set $RETRIEVAL_TOKEN), or add --insecure to serve the index to anyone who can reach it"
    )
    check_exposure(host, TOKEN, insecure=False)
    check_exposure(host, None, insecure=True)


def bound_instead(monkeypatch) -> list:
    """``run.bind_socket`` replaced: it records the address and ends the command (nothing is ever bound)."""
    calls = []

    def record(host, port):
        calls.append((host, port))
        raise SettingsError("reached the bind")

    monkeypatch.setattr(run, "bind_socket", record)
    return calls


def serve(index, *options, env=None):
    return CliRunner().invoke(main, ["serve", "--index", str(index), *options], env=env or {"RETRIEVAL_TOKEN": None})


def test_serve_on_a_public_address_without_a_token_is_refused_before_binding(index, monkeypatch, tmp_path):
    calls = bound_instead(monkeypatch)
    refused = serve(index, "--host", "0.0.0.0")
    assert refused.exit_code == 1 and calls == []
    assert refused.stderr == (
        "error: --host 0.0.0.0 can be reached from other machines and the server has no token: give --token-file F "
        "(or set $RETRIEVAL_TOKEN), or add --insecure to serve the index to anyone who can reach it\n"
    )
    token_file = write_token(tmp_path / "token", TOKEN)
    for options, env in (
        (["--insecure"], None),
        (["--token-file", token_file], None),
        ([], {"RETRIEVAL_TOKEN": TOKEN}),
    ):
        passed = serve(index, "--host", "0.0.0.0", "--port", "8123", *options, env=env)
        assert passed.stderr == "error: reached the bind\n", options
    assert calls == [("0.0.0.0", 8123)] * 3


def test_serve_with_a_bad_token_file_stops_before_binding(index, monkeypatch, tmp_path):
    calls = bound_instead(monkeypatch)
    done = serve(index, "--token-file", str(tmp_path / "missing"))
    assert done.exit_code == 1 and calls == [] and len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith(f"error: --token-file {tmp_path / 'missing'} does not exist: write a token into it")
