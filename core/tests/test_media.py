"""media/fetch.py against real loopback HTTP servers (FakeLabelStudio, a plain file server), never mocked."""

from __future__ import annotations

import base64
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from label_studio_ml import LabelStudioMLBase
from label_studio_ml.errors import MediaError
from label_studio_ml.media.fetch import MediaFetcher, is_media_reference
from label_studio_ml.testing.plugin import FakeLabelStudio, LocalHTTPServer

IMAGE = bytes(range(256)) * 40
UPLOAD = "/data/upload/2/3f9c1a2b-cat.jpg"


class FileServer(LocalHTTPServer):
    """A third-party host: serves /files/<name>, /slow (waits), /stream (no Content-Length), /redirect?to=."""

    def __init__(self, files: dict[str, bytes] | None = None) -> None:
        self.files = files or {}
        self.requests: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                try:
                    self._get()
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass

            def _get(self) -> None:
                server.requests.append({"path": self.path, "headers": dict(self.headers)})
                if self.path == "/slow":
                    time.sleep(2)
                if self.path.startswith("/drip"):  # one byte every 0.1 s for 10 s: of the body, or of the headers
                    headers = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
                    self.wfile.write(headers if self.path == "/drip" else b"HTTP/1.1 200 OK\r\nX-Slow: ")
                    for _ in range(100):
                        self.wfile.write(b"x")
                        self.wfile.flush()
                        time.sleep(0.1)
                    return
                if self.path == "/stream":
                    self.send_response(200)
                    self.send_header("Connection", "close")
                    self.end_headers()
                    for _ in range(50):
                        self.wfile.write(b"x" * 1000)
                    return
                if self.path.startswith("/redirect?to="):
                    self.send_response(302)
                    self.send_header("Location", self.path.split("=", 1)[1])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = server.files.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

        super().__init__(Handler)


@pytest.fixture
def other() -> Iterator[FileServer]:
    with FileServer({"/files/pic.png": b"third-party bytes", "/public/bucket-key/a.png": b"presigned bytes"}) as server:
        yield server


@pytest.fixture
def ls(other: FileServer) -> Iterator[FakeLabelStudio]:
    with FakeLabelStudio(files={UPLOAD: IMAGE}, redirect_to=other.url) as fake:
        yield fake


def fetcher(tmp_path: Path, ls: FakeLabelStudio | None = None, token: str | None = None, **kwargs: Any) -> MediaFetcher:
    return MediaFetcher(
        tmp_path / "cache",
        ls.url if ls else "",
        token if token is not None else (ls.legacy_token if ls else ""),
        **kwargs,
    )


def test_is_media_reference() -> None:
    for value in (UPLOAD, "upload/2/a.jpg", "/data/local-files/?d=a.png", "s3://b/k", "https://x/y.txt"):
        assert is_media_reference(value)
    for value in ("I love this", "see https://x.org for more", 5, None, "/etc/passwd", "x" * 5000):
        assert not is_media_reference(value)


def test_ls_upload_with_legacy_token(tmp_path: Path, ls: FakeLabelStudio) -> None:
    path = fetcher(tmp_path, ls).fetch(UPLOAD)
    assert path.read_bytes() == IMAGE
    assert path.name.endswith("__3f9c1a2b-cat.jpg") and path.is_relative_to(tmp_path / "cache")
    assert ls.auth_headers_seen(UPLOAD) == [f"Token {ls.legacy_token}"]
    assert fetcher(tmp_path / "b", ls).fetch("upload/2/3f9c1a2b-cat.jpg").read_bytes() == IMAGE


def test_ls_upload_with_personal_access_token(tmp_path: Path, ls: FakeLabelStudio) -> None:
    media = fetcher(tmp_path, ls, token=ls.pat)
    assert media.fetch(UPLOAD).read_bytes() == IMAGE
    assert [r["path"] for r in ls.requests] == ["/api/token/refresh/", UPLOAD]
    assert ls.auth_headers_seen(UPLOAD) == [f"Bearer {ls.access}"], "the PAT itself is never sent as auth"
    # the access token expires (LS rotates it): a 401 triggers one refresh and a retry
    old_access = ls.access
    ls.access = ls.access.replace("sig2", "sig3")
    assert media.fetch(UPLOAD + "?v=2").read_bytes() == IMAGE  # another URL: not a cache hit
    assert ls.auth_headers_seen(UPLOAD)[-2:] == [f"Bearer {old_access}", f"Bearer {ls.access}"]
    assert [r["path"] for r in ls.requests].count("/api/token/refresh/") == 2


def test_bad_pat_is_a_media_error(tmp_path: Path, ls: FakeLabelStudio) -> None:
    bad = ".".join([ls.pat.split(".")[0], base64.urlsafe_b64encode(b'{"x": 1}').decode().rstrip("="), "s"])
    with pytest.raises(MediaError, match="refresh failed with HTTP 401"):
        fetcher(tmp_path, ls, token=bad).fetch(UPLOAD)


def test_token_goes_only_to_the_ls_host(tmp_path: Path, ls: FakeLabelStudio, other: FileServer) -> None:
    media = fetcher(tmp_path, ls)
    assert media.fetch(f"{other.url}/files/pic.png").read_bytes() == b"third-party bytes"
    # an absolute URL on the LS host gets the token
    assert media.fetch(f"{ls.url}{UPLOAD}").read_bytes() == IMAGE
    assert ls.auth_headers_seen(UPLOAD) == [f"Token {ls.legacy_token}"]
    # a third-party redirect to somewhere else: still no token
    media.fetch(f"{other.url}/redirect?to={other.url}/files/pic.png")
    assert all("Authorization" not in r["headers"] for r in other.requests)


def test_presigned_cloud_uri(tmp_path: Path, ls: FakeLabelStudio, other: FileServer) -> None:
    media = fetcher(tmp_path, ls)
    path = media.fetch("s3://bucket/bucket-key/a.png", task_id=7)
    assert path.read_bytes() == b"presigned bytes"
    presign = [r for r in ls.requests if r["path"].startswith("/tasks/7/presign/")]
    assert len(presign) == 1 and presign[0]["headers"]["Authorization"] == f"Token {ls.legacy_token}"
    fileuri = presign[0]["path"].split("fileuri=", 1)[1]
    assert base64.urlsafe_b64decode(fileuri).decode() == "s3://bucket/bucket-key/a.png"
    assert [r["path"] for r in other.requests] == ["/public/bucket-key/a.png"]
    assert "Authorization" not in other.requests[0]["headers"], "no token on the 303 to another host"
    # cached by the cloud URI: the presigned URL (which expires) is not asked again
    assert media.fetch("s3://bucket/bucket-key/a.png", task_id=7) == path
    assert len(other.requests) == 1 and len(ls.requests) == 1
    with pytest.raises(MediaError, match="needs the task id"):
        media.fetch("gs://bucket/x.png")


def test_cache_hit_makes_no_request(tmp_path: Path, ls: FakeLabelStudio) -> None:
    media = fetcher(tmp_path, ls)
    first = media.fetch(UPLOAD)
    count = len(ls.requests)
    assert media.fetch(UPLOAD) == first and len(ls.requests) == count
    assert fetcher(tmp_path, ls).fetch(UPLOAD) == first, "the cache is on disk: a new fetcher reuses it"
    assert len(ls.requests) == count


@pytest.mark.parametrize("status", [401, 404, 500])
def test_ls_errors_are_media_errors_with_a_reason(tmp_path: Path, ls: FakeLabelStudio, status: int) -> None:
    ls.fail_status = status
    with pytest.raises(MediaError, match=f"answered HTTP {status}"):
        fetcher(tmp_path, ls).fetch(UPLOAD)
    assert not list((tmp_path / "cache").glob("*")) if (tmp_path / "cache").exists() else True


def test_wrong_token_and_missing_file(tmp_path: Path, ls: FakeLabelStudio) -> None:
    with pytest.raises(MediaError, match="HTTP 401"):
        fetcher(tmp_path, ls, token="wrong-token").fetch(UPLOAD)
    with pytest.raises(MediaError, match="HTTP 404"):
        fetcher(tmp_path, ls).fetch("/data/upload/2/missing.jpg")
    with pytest.raises(MediaError, match="set LABEL_STUDIO_URL"):
        MediaFetcher(tmp_path / "c").fetch(UPLOAD)
    with pytest.raises(MediaError, match="empty"):
        fetcher(tmp_path, ls).fetch("  ")


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://x/y", "javascript:alert(1)", "127.0.0.1/x.png"]
)
def test_only_http_and_https(tmp_path: Path, url: str) -> None:
    with pytest.raises(MediaError, match="not allowed"):
        MediaFetcher(tmp_path).fetch(url)


def test_redirect_to_another_scheme_is_refused(tmp_path: Path, other: FileServer) -> None:
    with pytest.raises(MediaError, match="non-http"):
        MediaFetcher(tmp_path).fetch(f"{other.url}/redirect?to=file:///etc/passwd")


def test_media_allowed_hosts(tmp_path: Path, ls: FakeLabelStudio, other: FileServer) -> None:
    media = fetcher(tmp_path, ls, allowed_hosts=("images.example.com",))
    with pytest.raises(MediaError, match="not in MEDIA_ALLOWED_HOSTS"):
        media.fetch(f"{other.url}/files/pic.png")
    assert other.requests == []
    assert media.fetch(UPLOAD).read_bytes() == IMAGE, "the LS host is always allowed"
    port = other.url.rsplit(":", 1)[1]
    allowed = fetcher(tmp_path / "2", ls, allowed_hosts=("localhost",))
    assert allowed.fetch(f"http://localhost:{port}/files/pic.png").read_bytes() == b"third-party bytes"
    with pytest.raises(MediaError, match="MEDIA_ALLOWED_HOSTS"):  # a redirect must stay on allowed hosts
        allowed.fetch(f"http://localhost:{port}/redirect?to={other.url}/files/pic.png")


def test_size_limit(tmp_path: Path, ls: FakeLabelStudio, other: FileServer) -> None:
    with pytest.raises(MediaError, match="larger than 1000 bytes"):
        fetcher(tmp_path, ls, max_bytes=1000).fetch(UPLOAD)  # declared Content-Length
    with pytest.raises(MediaError, match="larger than 1000 bytes"):
        MediaFetcher(tmp_path, max_bytes=1000).fetch(f"{other.url}/stream")  # no Content-Length
    assert MediaFetcher(tmp_path / "big").fetch(f"{other.url}/stream").stat().st_size == 50_000


def test_timeout(tmp_path: Path, other: FileServer) -> None:
    started = time.monotonic()
    with pytest.raises(MediaError, match="took longer than 0.3 s"):
        MediaFetcher(tmp_path, timeout=0.3).fetch(f"{other.url}/slow")
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize("path", ["/drip", "/drip-headers"])
def test_timeout_bounds_a_drip_fed_download(tmp_path: Path, other: FileServer, path: str) -> None:
    """Issue 21 #2: a byte every 0.1 s never trips a per-read timeout; MEDIA_TIMEOUT is the whole fetch."""
    started = time.monotonic()
    with pytest.raises(MediaError, match="took longer than 0.5 s"):
        MediaFetcher(tmp_path, timeout=0.5).fetch(f"{other.url}{path}")
    assert time.monotonic() - started < 1.0
    assert not list(tmp_path.glob("*__*")), "nothing half-downloaded is cached"


@pytest.mark.parametrize("host", ["169.254.169.254", "[fe80::1]", "[::ffff:169.254.169.254]"])
def test_metadata_and_link_local_addresses_are_refused(tmp_path: Path, host: str) -> None:
    """Issue 21 #7: refused at connect time (so DNS names resolving there are caught too), before any byte goes out."""
    with pytest.raises(MediaError, match="link-local or cloud-metadata address"):
        MediaFetcher(tmp_path, timeout=2).fetch(f"http://{host}/latest/meta-data/")


def test_a_redirect_to_a_metadata_address_is_refused(tmp_path: Path, other: FileServer) -> None:
    with pytest.raises(MediaError, match="link-local or cloud-metadata address"):
        MediaFetcher(tmp_path, timeout=2).fetch(f"{other.url}/redirect?to=http://169.254.169.254/latest/")


@pytest.mark.parametrize("path", ["/data/upload/../../api/projects/", "/data/upload/%2e%2e/%2E%2E/x", "upload/./../x"])
def test_ls_paths_cannot_climb_out(tmp_path: Path, ls: FakeLabelStudio, path: str) -> None:
    """Issue 21 #7: the token-carrying GET goes to the LS path the task names, not another one."""
    with pytest.raises(MediaError, match="'.' or '..' segments"):
        fetcher(tmp_path, ls).fetch(path)
    assert ls.requests == []


def test_cache_is_keyed_by_the_full_url(tmp_path: Path, ls: FakeLabelStudio, other: FileServer) -> None:
    """Issue 21 #3: bytes one host gave for /data/upload/x are never served for another host's /data/upload/x."""
    other.files[UPLOAD] = b"someone else's bytes"
    media = MediaFetcher(tmp_path / "cache")
    assert media.fetch(UPLOAD, ls_url=other.url).read_bytes() == b"someone else's bytes"
    assert media.fetch(UPLOAD, ls_url=ls.url, ls_token=ls.legacy_token).read_bytes() == IMAGE


@pytest.fixture
def document_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "images").mkdir(parents=True)
    (root / "images" / "cat 1.png").write_bytes(b"local cat")
    (tmp_path / "secret.txt").write_text("secret")
    os.symlink(tmp_path, root / "escape")
    os.symlink(root / "images" / "cat 1.png", root / "inside-link.png")
    return root


def test_local_files_under_the_document_root(tmp_path: Path, document_root: Path) -> None:
    media = MediaFetcher(tmp_path / "cache", document_root=str(document_root))
    path = media.fetch("/data/local-files/?d=images/cat%201.png")
    assert path == document_root / "images" / "cat 1.png" and path.read_bytes() == b"local cat"
    assert media.fetch("/data/local-files/?d=inside-link.png").read_bytes() == b"local cat"


@pytest.mark.parametrize(
    "rel",
    [
        "../secret.txt",
        "%2e%2e/secret.txt",
        "%252e%252e/secret.txt",
        "images/../../secret.txt",
        "images%2F..%2F..%2Fsecret.txt",
        "/etc/passwd",
        "%2Fetc%2Fpasswd",
        "escape/secret.txt",
    ],
)
def test_local_file_traversal_is_refused(tmp_path: Path, document_root: Path, rel: str) -> None:
    media = MediaFetcher(tmp_path / "cache", document_root=str(document_root))
    with pytest.raises(MediaError, match="escapes the document root"):
        media.fetch(f"/data/local-files/?d={rel}")


# --- through a model ------------------------------------------------------------------------------------


class ImageSize(LabelStudioMLBase):
    def predict(self, tasks: list[dict], context: dict | None = None, **kwargs: Any) -> list[dict]:
        out = []
        for task in tasks:
            path = self.get_local_path(task["data"]["image"], task_id=task["id"])
            size = len(Path(path).read_bytes())
            out.append(
                {
                    "result": [
                        {
                            "from_name": "label",
                            "to_name": "image",
                            "type": "choices",
                            "value": {"choices": ["Big" if size > 1000 else "Small"]},
                        }
                    ],
                    "score": 1.0,
                }
            )
        return out


IMAGE_CONFIG = """<View><Image name="image" value="$image"/><Choices name="label" toName="image">
<Choice value="Big"/><Choice value="Small"/></Choices></View>"""


def test_a_media_error_empties_only_that_task(make_client: Any, ls: FakeLabelStudio) -> None:
    client = make_client(ImageSize, label_studio_url=ls.url, label_studio_api_key=ls.legacy_token)
    tasks = [
        {"id": 1, "data": {"image": UPLOAD}},
        {"id": 2, "data": {"image": "/data/upload/2/gone.jpg"}},
        {"id": 3, "data": {"image": "s3://bucket/bucket-key/a.png"}},
    ]
    reply = client.post("/predict", json={"tasks": tasks, "label_config": IMAGE_CONFIG})
    assert reply.status_code == 200
    results = reply.json()["results"]
    assert [r["result"][0]["value"]["choices"] if r["result"] else [] for r in results] == [["Big"], [], ["Small"]]


def test_read_text_fetches_urls_only(tmp_path: Path, ls: FakeLabelStudio) -> None:
    ls.files["/data/upload/2/doc.txt"] = "Grüße aus Köln".encode()
    from label_studio_ml.config import Settings
    from label_studio_ml.model import ModelContext

    model = LabelStudioMLBase.__new__(LabelStudioMLBase)
    model._bind(
        ModelContext.standalone(
            Settings.from_dict(
                {"model_dir": tmp_path, "label_studio_url": ls.url, "label_studio_api_key": ls.legacy_token}
            )
        )
    )
    model.__init__(label_config="")
    assert model.read_text({"id": 1, "data": {"t": "/data/upload/2/doc.txt"}}, "t") == "Grüße aus Köln"
    assert model.read_text({"id": 1, "data": {"t": "plain text, not a URL"}}, "t") == "plain text, not a URL"
    with pytest.raises(KeyError):
        model.read_text({"id": 1, "data": {}}, "t")


def test_a_drip_feeding_media_server_cannot_take_every_prediction_thread(tmp_path: Path, other: FileServer) -> None:
    """Issue 21 #2: 16 predictions whose media drips hold no slot another task's /predict needs; each of them
    ends at MEDIA_TIMEOUT with a reason."""
    import requests
    from conftest import LiveServer

    from label_studio_ml.config import Settings
    from label_studio_ml.server.app import create_app

    settings = Settings.from_dict({"model_dir": tmp_path, "threads": 4, "media_timeout": 2.0})
    slow_body = {"tasks": [{"id": 1, "data": {"image": f"{other.url}/drip"}}], "label_config": IMAGE_CONFIG}
    fast_body = {"tasks": [{"id": 2, "data": {"image": f"{other.url}/files/pic.png"}}], "label_config": IMAGE_CONFIG}
    with LiveServer(create_app(ImageSize, settings, background_load=False)) as server:
        normal = time.monotonic()
        assert requests.post(server.url + "/predict", json=fast_body, timeout=5).status_code == 200
        normal = time.monotonic() - normal
        slow_replies: list[Any] = []

        def slow() -> None:
            slow_replies.append(requests.post(server.url + "/predict", json=slow_body, timeout=10))

        threads = [threading.Thread(target=slow) for _ in range(16)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        while sum(r["path"] == "/drip" for r in other.requests) < 16 and time.monotonic() - started < 2:
            time.sleep(0.01)
        asked = time.monotonic()
        reply = requests.post(server.url + "/predict", json=fast_body, timeout=5)
        answered_in = time.monotonic() - asked
        for thread in threads:
            thread.join(10)
    assert reply.status_code == 200 and reply.json()["results"][0]["result"], reply.text
    assert answered_in < max(0.5, 5 * normal), (answered_in, normal)
    assert len(slow_replies) == 16 and all(r.status_code == 422 for r in slow_replies)
    assert all("took longer than 2 s (MEDIA_TIMEOUT)" in r.json()["error"] for r in slow_replies)
    assert time.monotonic() - started < 2.0 + 2.0, "every dripped fetch ended at MEDIA_TIMEOUT"


def test_an_unauthenticated_setup_cannot_send_the_ls_token_elsewhere(
    make_client: Any, ls: FakeLabelStudio, other: FileServer
) -> None:
    """Issue 21 #3: basic auth off, no LABEL_STUDIO_URL. LS's /setup gives its hostname and token; anyone then
    names another hostname (alone, or with a token of their own): LS's token never goes there, and what the
    other host served is never served for LS's URL."""
    other.files[UPLOAD] = b"attacker bytes"
    client = make_client(ImageSize, label_studio_api_key="operator-key-0123")
    setup = {"project": "5.1700000000", "schema": IMAGE_CONFIG}
    predict = {"project": "5.1700000000", "tasks": [{"id": 1, "data": {"image": UPLOAD}}]}
    assert client.post("/setup", json={**setup, "hostname": ls.url, "access_token": ls.legacy_token}).status_code == 200
    assert client.post("/predict", json=predict).json()["results"][0]["result"][0]["value"]["choices"] == ["Big"]
    assert client.post("/setup", json={**setup, "hostname": other.url}).status_code == 200  # ignored: no token
    assert client.post("/predict", json=predict).json()["results"][0]["result"][0]["value"]["choices"] == ["Big"]
    assert other.requests == []
    client.post("/setup", json={**setup, "hostname": other.url, "access_token": "attacker-token"})
    client.post("/predict", json=predict)  # goes to the other host, with the token that came with it only
    sent = [r["headers"].get("Authorization") for r in other.requests]
    assert sent and all(h == "Token attacker-token" for h in sent), sent
    assert all(
        ls.legacy_token not in str(r["headers"]) and "operator-key" not in str(r["headers"]) for r in other.requests
    )
    client.post("/setup", json={**setup, "hostname": ls.url, "access_token": ls.legacy_token})  # LS sets it back
    reply = client.post("/predict", json=predict).json()["results"][0]
    assert reply["result"][0]["value"]["choices"] == ["Big"], "the other host's bytes are not served for LS's URL"


def test_an_authenticated_setup_hostname_gets_the_operator_key(make_client: Any, ls: FakeLabelStudio) -> None:
    client = make_client(
        ImageSize, label_studio_api_key=ls.legacy_token, basic_auth_user="ls", basic_auth_pass="secret-pass"
    )
    auth = ("ls", "secret-pass")
    client.post("/setup", auth=auth, json={"project": "5", "schema": IMAGE_CONFIG, "hostname": ls.url})
    reply = client.post("/predict", auth=auth, json={"project": "5", "tasks": [{"id": 1, "data": {"image": UPLOAD}}]})
    assert reply.json()["results"][0]["result"][0]["value"]["choices"] == ["Big"]
    assert ls.auth_headers_seen(UPLOAD) == [f"Token {ls.legacy_token}"]
