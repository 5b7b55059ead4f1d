"""https through the default transport (canvas/http1.py), whose TLS context is made on the
first https request: the server's certificate is verified as httpx verifies it (certifi, or
SSL_CERT_FILE), and a certificate nobody trusts stops the request before anything is sent."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import pytest

from canvas_tui.canvas.client import AttemptEvent, CanvasClient
from canvas_tui.canvas.errors import CanvasError, Category, may_have_been_applied
from canvas_tui.canvas.http1 import Http1Transport
from canvas_tui.simulator import ADMIN_TOKEN, build_app
from canvas_tui.simulator.testing import serve_in_thread
from tests.canvas.conftest import Sleeps, sim_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1: (certificate file, key file)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    names = ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
    files = ["-keyout", str(key), "-out", str(cert)]
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", *names, *files],
        check=True,
        capture_output=True,
    )
    return str(cert), str(key)


@pytest.fixture
def served_tls(certificate: tuple[str, str]) -> Iterator[str]:
    with serve_in_thread(build_app(sim_config()), tls=certificate) as url:
        yield url


async def test_an_untrusted_certificate_stops_the_request_before_it_is_sent(
    served_tls: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    events: list[AttemptEvent] = []
    async with CanvasClient(served_tls, ADMIN_TOKEN, max_attempts=1, sleep=Sleeps()) as client:
        with pytest.raises(CanvasError) as caught:
            await client.whoami(observer=events.append)
    assert caught.value.category is Category.NETWORK
    assert not may_have_been_applied(caught.value)  # a failed handshake sends nothing
    assert [e.status for e in events] == [None]
    assert "certificate" in (events[0].message or "").lower()


async def test_a_certificate_trusted_through_ssl_cert_file_is_accepted(
    served_tls: str, certificate: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", certificate[0])
    async with CanvasClient(served_tls, ADMIN_TOKEN, sleep=Sleeps()) as client:
        me = await client.whoami()
        again = await client.whoami()  # the same connection, the same context
        transport = client._transport
        assert isinstance(transport, Http1Transport) and len(transport._open) == 1
    assert me["id"] == again["id"] == 1
