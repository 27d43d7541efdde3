"""The room pays too: the board shows the checkout's address on the room's network, and its QR code."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import pytest
import segno

import rig
from app import create_app
from app.lan import checkout_url, lan_address, room_port
from app.views.board import QR_STYLE

pytestmark = pytest.mark.unit


def _app(tmp_path, **config):
    return create_app({"sqlite_path": str(tmp_path / "paygate.sqlite3"), "key_prefix": rig.unique("qr:") + ":",
                       "START_BACKGROUND": False, **config})


def test_the_qr_code_is_an_svg_of_the_public_url(tmp_path):
    application = _app(tmp_path, public_url="http://192.168.1.20:8000")
    client = application.test_client()
    r = client.get("/board/qr.svg")
    assert r.status_code == 200 and r.mimetype == "image/svg+xml"
    assert ET.fromstring(r.data).tag == "{http://www.w3.org/2000/svg}svg"  # a document a browser draws as <img>
    assert r.data == _svg("http://192.168.1.20:8000/") != _svg("http://192.168.1.21:8000/")
    page = client.get("/board").get_data(as_text=True)
    assert 'href="http://192.168.1.20:8000/"' in page and 'src="/board/qr.svg"' in page
    assert "Content-Security-Policy" in client.get("/board/qr.svg").headers


def test_without_public_url_the_board_names_this_machines_lan_address_and_the_configured_port():
    address = lan_address()
    expected = f"http://{address}:8123/" if address else "http://127.0.0.1:8123/"
    assert checkout_url(None, 8123) == expected
    assert checkout_url("https://pay.example.test/", 8123) == "https://pay.example.test/"
    assert room_port({"PORT": "8123", "BIND": "0.0.0.0:9000"}) == 8123
    assert room_port({"BIND": "0.0.0.0:9000"}) == 9000
    assert room_port({"PORT": "８１２３"}) == room_port({}) == 8000  # fullwidth digits are no port


def _svg(url: str) -> bytes:
    out = io.BytesIO()
    segno.make(url, error="m").save(out, kind="svg", **QR_STYLE)
    return out.getvalue()
