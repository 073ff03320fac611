import os
import shutil
import socket
import subprocess
import time

import pytest

from tests.servers import free_port


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A real redis-server on 127.0.0.1 (installed by .ci/run); stopped after the session."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("ROSIE_REQUIRE_REDIS"):
            pytest.fail("redis-server is required (ROSIE_REQUIRE_REDIS is set) but not installed")
        pytest.skip("redis-server not installed (CI installs it)")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", str(workdir)], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    process.terminate()
    process.wait(timeout=10)
