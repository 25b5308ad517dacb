"""Reply bytes that do not depend on when, or in which state, the server builds them."""
import subprocess
import sys

from .conftest import REPO

# Run in a fresh interpreter: `mimetypes` must not have been set up by an earlier test.
_CONTENT_TYPE_WITHOUT_DESCRIPTORS = """
import os, resource
from apps.webserver import responses          # what the server imports before it serves
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
held = []
try:
    while True:
        held.append(os.open(os.devnull, os.O_RDONLY))
except OSError:
    pass                                       # every descriptor is taken, as under a flood
print(responses.content_type("a.css"), responses.content_type("b.html"), sep="|")
"""


def test_content_types_need_no_descriptor_while_serving():
    """mimetypes reads /etc/mime.types the first time it is asked, and that was the first
    request: out of descriptors then (a flood of clients), the request was a 500 with a
    traceback in the log, and with colors on two workers could set mimetypes up at once. The
    table is read once at import, before the server accepts anyone."""
    proc = subprocess.run([sys.executable, "-c", _CONTENT_TYPE_WITHOUT_DESCRIPTORS], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "text/css; charset=utf-8|text/html; charset=utf-8"
