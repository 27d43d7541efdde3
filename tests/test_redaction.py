"""Credentials never reach /debug/config, whatever the form of the URL.

A table of URL forms the kit's clients accept (pymongo, redis-py) and a few
they refuse, each with what /debug/config may show; a property test that
redaction never raises and hides a password of any characters; and the app's
/debug/config with a multi-host MongoDB URL (it used to answer 500).
"""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.config import Settings, redact_url

pytestmark = pytest.mark.unit

SECRET = "s3cret"

CASES = [
    # MongoDB: one host, several hosts (with and without ports), IPv6, SRV.
    ("mongodb://paygate:s3cret@127.0.0.1:27017/", "mongodb://paygate:***@127.0.0.1:27017/"),
    ("mongodb://u:s3cret@h1,h2/", "mongodb://u:***@h1,h2/"),
    ("mongodb://u:s3cret@h1:27017,h2:27018,h3/paygate?replicaSet=rs0",
     "mongodb://u:***@h1:27017,h2:27018,h3/paygate?replicaSet=rs0"),
    ("mongodb://u:s3cret@h1:notaport,h2/", "mongodb://u:***@h1:notaport,h2/"),
    ("mongodb://u:s3cret@[::1]:27017,[fe80::1]/", "mongodb://u:***@[::1]:27017,[fe80::1]/"),
    ("mongodb+srv://U:s3cret@Cluster0.example.net/paygate?retryWrites=true",
     "mongodb+srv://U:***@Cluster0.example.net/paygate?retryWrites=true"),
    ("mongodb://u:p%40s3cret%2F@h/", "mongodb://u:***@h/"),
    ("mongodb://:s3cret@h/", "mongodb://:***@h/"),
    # Secrets in the options, in any case, encoded, after ; as well as &.
    ("mongodb://h/?password=s3cret", "mongodb://h/?password=***"),
    ("mongodb://h1,h2/?a=1;PassWord=s3cret&w=1", "mongodb://h1,h2/?a=1;PassWord=***&w=1"),
    ("mongodb://h/?pass%77ord=s3cret", "mongodb://h/?pass%77ord=***"),
    ("mongodb://u@h/?authSource=admin&tls=true&tlsCertificateKeyFile=/etc/paygate.pem&tlsCertificateKeyFilePassword=s3cret",
     "mongodb://u@h/?authSource=admin&tls=true&tlsCertificateKeyFile=/etc/paygate.pem&tlsCertificateKeyFilePassword=***"),
    ("mongodb://AKIDEXAMPLE:s3cret@h/?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:s3cret",
     "mongodb://AKIDEXAMPLE:***@h/?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:***"),
    ("mongodb://h/?authmechanismproperties=SERVICE_NAME:mongodb,AWS_SESSION_TOKEN:s3cret",
     "mongodb://h/?authmechanismproperties=SERVICE_NAME:mongodb,AWS_SESSION_TOKEN:***"),
    ("mongodb://h/?authMechanismProperties=AWS_SESSION_TOKEN%3As3cret",
     "mongodb://h/?authMechanismProperties=AWS_SESSION_TOKEN:***"),
    # Redis: TCP, TLS, a unix socket with the password in the user part or in the options.
    ("redis://:s3cret@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
    ("redis://default:s3cret@redis:6379/0", "redis://default:***@redis:6379/0"),
    ("rediss://user:s3cret@h:6380", "rediss://user:***@h:6380"),
    ("redis://h:6379/0?password=s3cret", "redis://h:6379/0?password=***"),
    ("redis://h/0?ssl_keyfile=/k.pem&ssl_password=s3cret&token=s3cret",
     "redis://h/0?ssl_keyfile=/k.pem&ssl_password=***&token=***"),
    ("unix://:s3cret@/run/redis.sock?db=0&password=s3cret", "unix://:***@/run/redis.sock?db=0&password=***"),
    ("unix:///run/redis.sock?password=s3cret", "unix:///run/redis.sock?password=***"),
    ("unix:/run/redis.sock?password=s3cret", "unix:/run/redis.sock?password=***"),
    ("redis://h/0#password=s3cret", "redis://h/0#password=***"),
    # Unescaped characters in a password: the clients refuse these, the page still hides them.
    ("mongodb://u:p@s3cret@h/", "mongodb://u:***@h/"),
    ("mongodb://u:p/s3cret@h/paygate", "mongodb://***"),
    ("redis://:p?s3cret@h:6379/0", "redis://***"),
    ("redis://:p#s3cret@h:6379/0", "redis://***"),
    ("unix:/run/a:s3cret@b.sock", "unix:***"),
    # Nothing secret: shown as it is.
    ("mongodb://127.0.0.1:27017/", "mongodb://127.0.0.1:27017/"),
    ("mongodb://mongo:27017/?replicaSet=rs0&tlsCertificateKeyFile=/etc/c.pem",
     "mongodb://mongo:27017/?replicaSet=rs0&tlsCertificateKeyFile=/etc/c.pem"),
    ("mongodb://paygate@h/?authMechanism=MONGODB-X509", "mongodb://paygate@h/?authMechanism=MONGODB-X509"),
    ("mongodb://h/?appname=ops@example.com", "mongodb://h/?appname=ops@example.com"),
    ("redis://redis:6379/0", "redis://redis:6379/0"),
    ("unix:///run/redis@6379.sock?db=1", "unix:///run/redis@6379.sock?db=1"),
    # Not a URL at all: nothing shown.
    ("s3cret", "***"),
    ("//u:s3cret@h", "***"),
    ("", ""),
]


@pytest.mark.parametrize(("url", "shown"), CASES)
def test_redact_url(url, shown):
    assert redact_url(url) == shown
    assert SECRET not in redact_url(url)


def test_settings_redacted_hides_every_secret():
    settings = Settings(mongo_url="mongodb://u:s3cret@h1:1,h2:2/?tlsCertificateKeyFilePassword=s3cret",
                        redis_url="unix://:s3cret@/run/redis.sock?password=s3cret",
                        admin_token=SECRET, secret_key=SECRET)
    shown = settings.redacted()
    assert SECRET not in repr(shown)
    assert shown["mongo_url"] == "mongodb://u:***@h1:1,h2:2/?tlsCertificateKeyFilePassword=***"
    assert shown["admin_token"] == shown["secret_key"] == "***"


@given(st.text())
def test_redact_url_never_raises(text):
    assert isinstance(redact_url(text), str)
    assert isinstance(redact_url("mongodb://" + text), str)


@given(st.text(min_size=1))
def test_a_password_of_any_characters_is_hidden(password):
    tail = "@h1:1,h2:2/paygate?replicaSet=rs0"
    # As written by hand (nothing escaped) and as it should be (percent-encoded).
    assert redact_url(f"mongodb://user:{password}{tail}") in (f"mongodb://user:***{tail}", "mongodb://***")
    assert redact_url(f"mongodb://user:{quote(password, safe='')}{tail}") == f"mongodb://user:***{tail}"


@given(st.text(st.characters(exclude_characters="&;"), min_size=1))
def test_a_password_option_of_any_characters_is_hidden(password):
    shown = redact_url(f"redis://h:6379/0?db=1&password={password}")
    assert shown in ("redis://h:6379/0?db=1&password=***", "redis://***")
