"""scratchgen.parallel: jobs shared among worker processes, results in the jobs' order, each worker with one
BLAS thread and the caller's backend, the caller's environment untouched; and the diffusion demo's samples
the same whether one process draws them or two."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import scratchgen as sg
from scratchgen import parallel

ROOT = Path(__file__).resolve().parent.parent


def test_jobs_run_in_worker_processes_and_come_back_in_order():
    before = dict(os.environ)
    assert parallel.map_in_processes(os.getppid, [(), (), ()], processes=2) == [os.getpid()] * 3  # children's
    assert parallel.map_in_processes(pow, [(2, 3), (3, 2), (10, 1), (0, 0)], processes=2) == [8, 9, 10, 1]
    assert dict(os.environ) == before


def test_workers_have_one_blas_thread_and_the_callers_backend(monkeypatch):
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    settings = parallel.map_in_processes(os.getenv, [("OPENBLAS_NUM_THREADS",), ("SCRATCHGEN_BACKEND",)],
                                         processes=2)
    assert settings == ["1", sg.get_backend()]
    assert os.environ["OPENBLAS_NUM_THREADS"] == "2"


def test_one_process_or_one_job_runs_here():
    assert parallel.map_in_processes(os.getpid, [()], processes=4) == [os.getpid()]
    assert parallel.map_in_processes(os.getpid, [(), ()], processes=1) == [os.getpid()] * 2
    assert parallel.default_processes() >= 1


@pytest.mark.numpy_only("compares a run in a subprocess on NumPy with one in this process")
def test_the_diffusion_demos_samples_do_not_depend_on_the_number_of_processes(tmp_path):
    """Two batches of 250 samples, drawn by two processes (the demo run as a script, as users run it) and
    by one (the same run resumed from its checkpoint, sampling again in this process): the same samples,
    so the same Fréchet distance to the test digits."""
    tiny = ["--dataset", "mnist", "--limit", "64", "--epochs", "1", "--base-channels", "8", "--T", "50",
            "--eval-samples", "500", "--ddim-steps", "3", "--judge-subset", "300", "--judge-epochs", "1",
            "--quiet", "--out", str(tmp_path / "run")]
    environment = {name: value for name, value in os.environ.items() if name != "SCRATCHGEN_BACKEND"}
    subprocess.run([sys.executable, str(ROOT / "demos" / "diffusion.py"), *tiny, "--sample-processes", "2"],
                   check=True, capture_output=True, env=environment, cwd=tmp_path)
    with open(tmp_path / "run" / "metrics.json") as file:
        two = json.load(file)["final"]
    subprocess.run([sys.executable, str(ROOT / "demos" / "diffusion.py"), *tiny, "--resume",
                    "--sample-processes", "1"], check=True, capture_output=True, env=environment, cwd=tmp_path)
    with open(tmp_path / "run" / "metrics.json") as file:
        one = json.load(file)["final"]
    assert two["frechet_distance"] == pytest.approx(one["frechet_distance"], rel=1e-4)
    assert two["class_shares"] == one["class_shares"]
