"""``preprocess`` and ``infer`` on a real portable runner, with relative paths.

Beam's job service (``local_job_service_main``) and an external SDK worker pool
(``worker_pool_main``, ``--environment_type=EXTERNAL``) run as processes on 127.0.0.1 in a folder of
their own: the client path of Flink and Spark, where workers run in another process and another
working directory. Every record must land where the command line asked, and nothing in the
services' folder.
"""

import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from tests.helpers import HOURGLASS, ROOT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        assert process.poll() is None, f"{process.args} exited with {process.returncode}"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{process.args} did not listen on port {port} within {seconds} s")


@pytest.fixture(scope="module")
def portable_runner(tmp_path_factory):
    """Beam flags of a running job service and worker pool (started in their own folder, each in its
    own process group, killed by group at the end); and that folder."""
    folder = tmp_path_factory.mktemp("services")
    # The workers import our packages (this checkout) with this environment's Python.
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]),
    }
    job_port, pool_port = _free_port(), _free_port()
    modules = {
        job_port: ["apache_beam.runners.portability.local_job_service_main", "--port", str(job_port)],
        pool_port: ["apache_beam.runners.worker.worker_pool_main", "--service_port", str(pool_port)],
    }
    processes = {}
    try:
        for port, module in modules.items():
            log = open(folder / f"{module[0].rsplit('.', 1)[1]}.log", "w")  # noqa: SIM115 (closed at exit)
            processes[port] = subprocess.Popen(
                [sys.executable, "-m", *module], cwd=folder, env=env, stdout=log, stderr=log, start_new_session=True
            )
        for port, process in processes.items():
            _wait_for_port(port, process)
        flags = [
            "--runner=PortableRunner",
            f"--job_endpoint=localhost:{job_port}",
            "--environment_type=EXTERNAL",
            f"--environment_config=localhost:{pool_port}",
        ]
        yield flags, folder
    finally:
        for process in processes.values():
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _records(pattern: str) -> int:
    return sum(1 for _ in tf.data.TFRecordDataset(sorted(glob.glob(pattern)), compression_type="GZIP"))


@pytest.mark.slow
@pytest.mark.integration
def test_relative_paths_land_where_asked_on_a_portable_runner(portable_runner, trained, image_tree, tmp_path):
    flags, services = portable_runner
    (train_cfg, _), (images, pixels) = trained, image_tree
    before = sorted(os.listdir(services))
    client = tmp_path / "client"
    client.mkdir()
    model = os.path.relpath(train_cfg.model_dir, client)
    source = os.path.relpath(images, client)

    def hourglass(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([HOURGLASS, *args, "--", *flags], capture_output=True, text=True, cwd=client, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    hourglass("preprocess", "--input", source, "--output", "data", "--eval-percent", "25")
    stats = json.loads((client / "data" / "stats.json").read_text())
    assert stats["records"] == {"read": len(pixels), "written": len(pixels), "rejected": 0}
    assert _records(str(client / "data" / "train-*.tfrecord.gz")) == stats["splits"]["train"]["records"]
    assert _records(str(client / "data" / "eval-*.tfrecord.gz")) == stats["splits"]["eval"]["records"]
    written = json.loads((client / "data" / "config.json").read_text())
    assert (written["input"], written["output"]) == (str(images), str(client / "data"))

    done = hourglass("infer", "--model-dir", model, "--input", source, "--output", "predictions")
    assert f"wrote {len(pixels)} Parquet rows" in done.stdout
    table = pq.read_table(glob.glob(str(client / "predictions" / "*.parquet")))
    assert sorted(table.column("id").to_pylist()) == sorted(pixels)

    assert sorted(os.listdir(services)) == before  # nothing written in the workers' folder
