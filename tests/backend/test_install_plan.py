"""The installer's plan, platform refusals and runner (fast: nothing is downloaded).

Dry runs go through ``python -m backend install``; the runner really executes small
commands; GPUs are described by an ``nvidia-smi`` stand-in script (``SAM3D_NVIDIA_SMI``).
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import numpy
import pytest

from backend.gpu import probe as gpu_probe
from backend.install import plan as plan_mod
from backend.install.plan import (
    MOGE_COMMIT,
    PYTORCH3D_COMMIT,
    SAM3D_COMMIT,
    UTILS3D_COMMIT,
    Plan,
    Requirement,
    Step,
    build_plan,
)
from backend.install.platform import check_platform
from backend.install.runner import Runner

REPO = Path(__file__).resolve().parents[2]
CUDA_STEPS = [
    "venv",
    "build-tools",
    "torch",
    "cuda-wheels",
    "cuda-builds",
    "runtime-deps",
    "sam3d-objects",
    "moge-utils3d",
    "hydra-patch",
    "sam2",
    "backend",
]


def fake_smi(tmp_path: Path, *rows: str) -> Path:
    script = tmp_path / "nvidia-smi"
    script.write_text("#!/bin/sh\ncat <<'EOF'\n" + "\n".join(rows) + "\nEOF\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


@pytest.fixture(autouse=True)
def _no_gpu_cache(monkeypatch, tmp_path):
    monkeypatch.setattr(gpu_probe, "CACHE_S", 0.0)
    monkeypatch.setenv("SAM3D_NVIDIA_SMI", str(tmp_path / "absent-nvidia-smi"))


def run_backend(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full = dict(os.environ, PYTHONPATH=str(REPO), **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "backend", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=full,
        timeout=300,
    )


def parse_steps(text: str) -> list[tuple[str, list[str]]]:
    steps: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        m = re.match(r"STEP (\d+)/(\d+) (\S+)", line)
        if m:
            steps.append((m.group(3), []))
        elif line.startswith("  $ ") and steps:
            steps[-1][1].append(line[4:])
    return steps


def test_cuda_dry_run_prints_the_pinned_commands_in_order(tmp_path):
    proc = run_backend(
        "install",
        "--venv",
        str(tmp_path / "venv"),
        "--profile",
        "cuda",
        "--dry-run",
        "--cuda-arch",
        "8.6",
        "--tool",
        "pip",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "profile cuda -> cuda121" in out  # no GPU to choose by: upstream's stack
    assert (
        "would refuse" in out and "nvidia-smi not on PATH" in out
    )  # this machine, reported, not fatal
    steps = parse_steps(out)
    assert [s for s, _ in steps] == CUDA_STEPS
    assert all(
        f"/{len(CUDA_STEPS)} " in line for line in out.splitlines() if line.startswith("STEP")
    )
    cmds = dict(steps)
    venv_py = str(tmp_path / "venv" / "bin" / "python")
    assert cmds["venv"][0].endswith(f"-m venv {tmp_path / 'venv'}")
    torch = cmds["torch"][0]
    assert torch.startswith(venv_py + " -m pip install")
    for pin in (
        "torch==2.5.1",
        "torchvision==0.20.1",
        "torchaudio==2.5.1",
        "--index-url https://download.pytorch.org/whl/cu121",
    ):
        assert pin in torch
    wheels = " ".join(cmds["cuda-wheels"])
    assert (
        "--no-deps xformers==0.0.28.post3 --index-url https://download.pytorch.org/whl/cu121"
        in wheels
    )
    assert (
        "spconv-cu121==2.3.8" in wheels
        and "kaolin==0.17.0 --find-links https://nvidia-kaolin" in wheels
    )
    builds = cmds["cuda-builds"]
    assert all(c.startswith("TORCH_CUDA_ARCH_LIST=8.6 FORCE_CUDA=1 ") for c in builds)
    assert f"pytorch3d.git@{PYTORCH3D_COMMIT}" in builds[0] and "--no-build-isolation" in builds[0]
    assert "flash_attn==2.8.3" in builds[-1]
    deps = cmds["runtime-deps"][0]
    for pin in (
        "hydra-core==1.3.2",
        "timm==0.9.16",
        "lightning==2.3.3",
        "open3d==0.18.0",
        "xatlas==0.0.9",
        "pymeshfix==0.17.0",
        "'numpy<2'",
        "opencv-python-headless==4.9.0.80",  # one cv2: the backend's own is headless too
    ):
        assert pin in deps
    assert "opencv-python==" not in deps
    assert cmds["sam2"][0].endswith("pip install --disable-pip-version-check iopath==0.1.10")
    assert cmds["sam2"][1].startswith("SAM2_BUILD_CUDA=0 ")
    assert cmds["sam2"][1].endswith("--no-deps --no-build-isolation sam2==1.1.0")
    assert (
        f"--no-deps 'sam3d_objects @ git+https://github.com/facebookresearch/sam-3d-objects.git@{SAM3D_COMMIT}'"
        in cmds["sam3d-objects"][0]
    )
    assert (
        f"--no-deps 'utils3d @ git+https://github.com/EasternJournalist/utils3d.git@{UTILS3D_COMMIT}'"
        in cmds["moge-utils3d"][0]
    )
    assert (
        f"--no-deps 'moge @ git+https://github.com/microsoft/MoGe.git@{MOGE_COMMIT}'"
        in cmds["moge-utils3d"][1]
    )
    assert 'hydra.__version__ == "1.3.2"' in cmds["hydra-patch"][0]
    assert cmds["backend"][0].endswith(f"pip install --disable-pip-version-check {REPO}")
    check = next(line for line in out.splitlines() if line.startswith("IMPORT-CHECK"))
    for mod in (
        "torch",
        "sam3d_objects",
        "pytorch3d.renderer",
        "spconv.pytorch",
        "moge.model.v1",
        "flash_attn",
        "backend.server",
    ):
        assert f" {mod}" in check


def test_cpu_dry_run(tmp_path):
    proc = run_backend(
        "install", "--venv", str(tmp_path / "v"), "--profile", "cpu", "--dry-run", "--tool", "pip"
    )
    assert proc.returncode == 0
    steps = parse_steps(proc.stdout)
    assert [s for s, _ in steps] == ["venv", "backend"]
    assert "would refuse" not in proc.stdout
    assert not (tmp_path / "v").exists()  # a dry run creates nothing


def test_uv_commands_and_flash_attn_only_on_ampere(tmp_path):
    p = build_plan(
        tmp_path / "v", "cuda121", tool="uv", cuda_arch_list="7.5", compute_capability=(7, 5)
    )
    assert p.steps[0].commands[0] == [
        "uv",
        "venv",
        "--python",
        "3.11",
        "--seed",
        str((tmp_path / "v").absolute()),
    ]
    torch = p.steps[2].commands[0]
    assert torch[:5] == ["uv", "pip", "install", "--python", str(p.python)]
    builds = [" ".join(c) for c in next(s for s in p.steps if s.name == "cuda-builds").commands]
    assert not any("flash_attn" in c for c in builds)
    assert "flash_attn" not in p.import_check
    assert next(s for s in p.steps if s.name == "cuda-builds").env["TORCH_CUDA_ARCH_LIST"] == "7.5"


def test_refuses_without_a_driver_and_creates_nothing(tmp_path):
    venv = tmp_path / "venv"
    proc = run_backend(
        "install",
        "--venv",
        str(venv),
        "--profile",
        "cuda",
        "--tool",
        "pip",
        env={"SAM3D_NVIDIA_SMI": str(tmp_path / "absent")},
    )
    assert proc.returncode == 3
    assert "refusing: this machine cannot take the cuda121 profile" in proc.stdout
    assert "nvidia driver: no NVIDIA GPU found" in proc.stdout
    assert "--profile cpu" in proc.stdout
    assert "STEP" not in proc.stdout and not venv.exists()


def test_old_gpu_small_gpu_old_driver(tmp_path, monkeypatch):
    monkeypatch.setenv(
        "SAM3D_NVIDIA_SMI",
        str(fake_smi(tmp_path, "0, Tesla P40, 24576, 24000, 6.1, 470.82.01")),
    )
    rep = check_platform("cuda121", tmp_path / "v", tool="pip")
    refused = {c.name: c.message for c in rep.refused}
    assert "too old" in refused["compute capability"] and "6.1" in refused["compute capability"]
    assert "CUDA 12.1 needs >= 530.30" in refused["driver"]
    assert "gpu memory" not in refused
    assert rep.cuda_arch_list == "6.1"
    fake_smi(tmp_path, "0, Tesla T4, 15360, 15000, 7.5, 535.104.05")  # fp16 is enough now
    rep = check_platform("cuda121", tmp_path / "v", tool="pip")
    assert {"compute capability", "driver", "gpu memory"}.isdisjoint(c.name for c in rep.refused)
    fake_smi(
        tmp_path, "0, NVIDIA GeForce RTX 3050, 6144, 6000, 8.6, 550.54.14"
    )  # same path, new GPU
    rep = check_platform("cuda121", tmp_path / "v", tool="pip")
    refused = {c.name: c.message for c in rep.refused}
    assert (
        "6144 MiB" in refused["gpu memory"]
        and "compute capability" not in refused
        and "driver" not in refused
    )


def test_arch_list_and_compute_capability_from_all_gpus(tmp_path, monkeypatch):
    monkeypatch.setenv(
        "SAM3D_NVIDIA_SMI",
        str(
            fake_smi(
                tmp_path,
                "0, NVIDIA GeForce RTX 4090, 24564, 24000, 8.9, 550.54.14",
                "1, NVIDIA RTX A6000, 49140, 49000, 8.6, 550.54.14",
            )
        ),
    )
    rep = check_platform("cuda121", tmp_path / "v", tool="pip")
    assert rep.cuda_arch_list == "8.6;8.9"
    assert rep.compute_capability == (8, 6)
    assert {c.name for c in rep.checks if c.ok} >= {
        "gpu",
        "driver",
        "compute capability",
        "gpu memory",
        "TORCH_CUDA_ARCH_LIST",
    }
    p = build_plan(
        tmp_path / "v",
        "cuda121",
        cuda_arch_list=rep.cuda_arch_list,
        compute_capability=rep.compute_capability,
    )
    assert (
        next(s for s in p.steps if s.name == "cuda-builds").env["TORCH_CUDA_ARCH_LIST"] == "8.6;8.9"
    )


def test_disk_check_counts_venv_and_weights(tmp_path, monkeypatch):
    rep = check_platform("cuda121", tmp_path / "v", weights_dest=tmp_path / "w", tool="pip")
    disk = next(c for c in rep.checks if c.name == "disk")
    assert "venv 14.0 GB + weights 13.5 GB (same disk)" in disk.message
    monkeypatch.setitem(plan_mod.VENV_GB, "cpu", 10.0**9)  # a venv larger than any disk
    rep = check_platform("cpu", tmp_path / "v", tool="pip")
    assert [c.name for c in rep.refused] == ["disk"]
    assert "free space or choose another --venv" in rep.refused[0].message


def _plan(tmp_path: Path, steps: list[Step], checks: tuple[str, ...] = ("json",)) -> Plan:
    venv = tmp_path / "venv"
    venv.mkdir(exist_ok=True)
    return Plan("cpu", "pip", venv, Path(sys.executable), steps, checks)


def test_runner_reports_failures_with_the_last_lines(tmp_path):
    py = sys.executable
    noisy = "import sys\nfor i in range(40): print('line', i)\nsys.exit(3)"
    steps = [
        Step("first", [[py, "-c", "print('hello')"]]),
        Step("boom", [[py, "-c", noisy]]),
        Step("never", [[py, "-c", "open('ran', 'w')"]]),
    ]
    lines: list[str] = []
    rc = Runner(_plan(tmp_path, steps), lines.append).run()
    assert rc == 1
    text = "\n".join(lines)
    assert lines[0] == "STEP 1/3 first" and "OK first" in lines[1]
    assert "STEP 2/3 boom" in text and "FAIL boom: exit status 3 from" in text
    assert "  | line 39" in text and "  | line 15" in text and "  | line 14" not in text
    assert "STEP 3/3" not in text and not (tmp_path / "venv" / "ran").exists()
    log = (tmp_path / "venv" / "sam3d-install.log").read_text()
    assert "line 0\n" in log and "[exit 3]" in log


def test_runner_skips_satisfied_steps(tmp_path):
    py = sys.executable
    plan = _plan(
        tmp_path,
        [
            Step(
                "have-numpy",
                [[py, "-c", "raise SystemExit(9)"]],
                satisfied_by=[Requirement(dist="numpy", version=numpy.__version__)],
            ),
            Step(
                "marker",
                [[py, "-c", "import pathlib; pathlib.Path('done.txt').write_text('x')"]],
                satisfied_by=[Requirement(marker="done.txt")],
            ),
            Step(
                "old-numpy",
                [[py, "-c", "print('would install')"]],
                satisfied_by=[Requirement(dist="numpy", version="0.0.1")],
            ),
        ],
    )
    for step in plan.steps:  # commands run in the venv folder, like the markers
        step.commands = [
            [*c[:2], f"import os; os.chdir({str(plan.venv)!r}); " + c[2]] for c in step.commands
        ]
    lines: list[str] = []
    assert Runner(plan, lines.append).run() == 0
    text = "\n".join(lines)
    assert "SKIP have-numpy (already satisfied)" in text
    assert "OK marker" in text and "OK old-numpy" in text
    lines.clear()
    assert Runner(plan, lines.append).run() == 0
    assert "SKIP marker (already satisfied)" in "\n".join(lines)


def test_import_check_names_each_failure(tmp_path):
    lines: list[str] = []
    plan = _plan(tmp_path, [], checks=("json", "definitely_not_a_module_xyz", "numpy"))
    assert Runner(plan, lines.append).run() == 2
    text = "\n".join(lines)
    assert "FAIL import definitely_not_a_module_xyz: ModuleNotFoundError" in text
    assert "IMPORT-CHECK FAILED: 1 of 3 modules (definitely_not_a_module_xyz)" in text


RTX_4090 = "NVIDIA GeForce RTX 4090,8.9,24564,550.54.14"
RTX_5090 = "NVIDIA GeForce RTX 5090,12.0,32607"


def test_assumed_rtx_4090_gets_upstreams_cu121_stack(tmp_path):
    proc = run_backend(
        "install", "--venv", str(tmp_path / "v"), "--dry-run", "--tool", "pip",
        "--assume-gpu", RTX_4090,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "profile auto -> cuda121: NVIDIA GeForce RTX 4090 (compute capability 8.9)" in out
    cmds = dict(parse_steps(out))
    assert "torch==2.5.1" in cmds["torch"][0] and "whl/cu121" in cmds["torch"][0]
    wheels = " ".join(cmds["cuda-wheels"])
    assert "xformers==0.0.28.post3" in wheels and "kaolin==0.17.0" in wheels
    assert any("flash_attn==2.8.3" in c for c in cmds["cuda-builds"])
    assert "[ok  ] driver: driver 550.54.14; CUDA 12.1 needs >= 530.30" in out


def test_assumed_rtx_5090_gets_the_cu128_stack(tmp_path):
    venv = tmp_path / "v"
    proc = run_backend(
        "install", "--venv", str(venv), "--dry-run", "--tool", "pip", "--assume-gpu", RTX_5090
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "profile auto -> cuda128: NVIDIA GeForce RTX 5090 has compute capability 12.0" in out
    assert "driver: assumed; CUDA 12.8 needs >= 570.26" in out
    steps = parse_steps(out)
    assert [s for s, _ in steps] == CUDA_STEPS
    cmds = dict(steps)
    torch = cmds["torch"][0]
    assert "torch==2.7.1" in torch and "torchvision==0.22.1" in torch and "whl/cu128" in torch
    wheels = " ".join(cmds["cuda-wheels"])
    assert "spconv-cu126==2.3.8" in wheels
    assert "xformers" not in wheels and "kaolin" not in wheels
    builds = cmds["cuda-builds"]
    src = venv / "src" / "pytorch3d"
    assert f"checkout --force {PYTORCH3D_COMMIT}" in builds[1]
    assert builds[2].endswith(f"-m backend.install.pytorch3d_source {src}")
    assert builds[3].endswith(f"--no-build-isolation {src}")
    assert "TORCH_CUDA_ARCH_LIST=12.0" in builds[3] and "BUILD_NO_CUDA=1" in builds[4]
    assert not any("flash_attn" in c for c in builds)
    check = next(line for line in out.splitlines() if line.startswith("IMPORT-CHECK"))
    assert " kaolin" not in check and " xformers" not in check and " flash_attn" not in check
    assert " pytorch3d.renderer" in check and " spconv.pytorch" in check


def test_doctor_says_which_profile_applies():
    out = run_backend("doctor", "--assume-gpu", RTX_5090).stdout
    assert (
        "install:      profile cuda128: NVIDIA GeForce RTX 5090 has compute capability 12.0" in out
    )
    out = run_backend("doctor", "--assume-gpu", RTX_4090).stdout
    assert "install:      profile cuda121: NVIDIA GeForce RTX 4090" in out
    out = run_backend("doctor").stdout  # this machine: no GPU
    assert "install:      profile cpu: no NVIDIA GPU found" in out
    bad = run_backend("doctor", "--assume-gpu", "RTX 5090")
    assert bad.returncode == 2 and "NAME,COMPUTE_CAPABILITY,MEMORY_MIB" in bad.stderr


def test_choose_profile():
    from backend.gpu.probe import GpuProbe
    from backend.install.platform import assumed_probe, choose_profile

    none = GpuProbe(error="no NVIDIA GPU found")
    assert choose_profile(none).profile == "cpu"
    assert choose_profile(none, "cuda").profile == "cuda121"
    assert choose_profile(assumed_probe(RTX_5090)).profile == "cuda128"
    assert choose_profile(assumed_probe(RTX_5090), "cuda").profile == "cuda128"
    assert choose_profile(assumed_probe(RTX_4090)).profile == "cuda121"
    assert choose_profile(assumed_probe("NVIDIA B200,10.0,183359")).profile == "cuda128"
    small = choose_profile(assumed_probe("NVIDIA GeForce RTX 3050,8.6,6144"))
    assert small.profile == "cpu" and "6144 MiB" in small.reason
    old = choose_profile(assumed_probe("Tesla P40,6.1,24576"))
    assert old.profile == "cpu" and "6.1" in old.reason
    assert choose_profile(assumed_probe(RTX_5090), "cuda121").profile == "cuda121"  # by hand
    with pytest.raises(ValueError):
        assumed_probe("RTX 5090,twelve,32607")


def test_cu121_stack_refuses_a_blackwell_gpu(tmp_path, monkeypatch):
    monkeypatch.setenv(
        "SAM3D_NVIDIA_SMI",
        str(fake_smi(tmp_path, "0, NVIDIA GeForce RTX 5090, 32607, 32000, 12.0, 575.51.02")),
    )
    refused = {c.name: c.message for c in check_platform("cuda121", tmp_path / "v").refused}
    assert "use --profile cuda128" in refused["cuda stack"]
    refused = {c.name: c.message for c in check_platform("cuda128", tmp_path / "v").refused}
    assert "cuda stack" not in refused and "driver" not in refused


def _tool(bin_dir: Path, name: str, text: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\n/bin/cat <<'EOF'\n{text}\nEOF\n")
    path.chmod(0o755)


def test_host_compiler_must_suit_nvcc_and_git_is_required(tmp_path, monkeypatch):
    cuda = tmp_path / "cuda"
    (cuda / "bin").mkdir(parents=True)
    _tool(cuda / "bin", "nvcc", "Cuda compilation tools, release 12.1, V12.1.105")
    tools = tmp_path / "bin"
    tools.mkdir()
    _tool(tools, "c++", "c++ (Debian 14.2.0-19) 14.2.0\nCopyright (C) 2024")
    monkeypatch.setenv("CUDA_HOME", str(cuda))
    monkeypatch.setenv("PATH", str(tools))  # no git, no uv
    rep = check_platform("cuda121", tmp_path / "v", tool="pip")
    refused = {c.name: c.message for c in rep.refused}
    assert "nvcc 12.1 accepts gcc up to 12; install gcc-12" in refused["c++ compiler"]
    assert "git not found" in refused["git"]
    assert "nvcc" not in refused
    rep = check_platform("cuda128", tmp_path / "v", tool="pip")
    refused = {c.name: c.message for c in rep.refused}
    assert "need the CUDA 12.8 to 12.x toolkit" in refused["nvcc"]
    _tool(cuda / "bin", "nvcc", "Cuda compilation tools, release 12.8, V12.8.93")
    rep = check_platform("cuda128", tmp_path / "v", tool="pip")
    refused = {c.name: c.message for c in rep.refused}
    assert "nvcc" not in refused and "c++ compiler" not in refused  # gcc 14 is fine for 12.8


def test_cpu_profile_runs_on_a_newer_python_when_there_is_no_311(tmp_path, monkeypatch):
    """Blender 5.1+ and distributions' Blender builds bring Python 3.13 and no 3.11: the cpu
    profile uses what there is (3.10+); the CUDA profiles still need upstream's 3.11."""
    from backend.install import platform as platform_mod

    monkeypatch.setattr(platform_mod, "find_python311", lambda: None)
    rep = check_platform("cpu", tmp_path / "v", tool="pip")
    py = next(c for c in rep.checks if c.name == "python")
    assert py.ok and rep.base_python == sys.executable
    rep = check_platform("cuda121", tmp_path / "v", tool="pip")
    py = next(c for c in rep.checks if c.name == "python")
    assert not py.ok and "Python 3.11 not found" in py.message
    plan = build_plan(tmp_path / "v", "cpu", base_python=rep.base_python or sys.executable)
    assert plan.steps[0].commands[0][:3] == [sys.executable, "-m", "venv"]


def test_choose_prints_the_choice_and_what_would_refuse_it(tmp_path):
    """``--choose``: what the Blender add-on shows before installing (one JSON line)."""
    import json

    venv = tmp_path / "venv"
    auto = json.loads(run_backend("install", "--venv", str(venv), "--choose").stdout)
    assert auto["requested"] == "auto" and auto["profile"] == "cpu"
    assert auto["reason"].startswith("no NVIDIA GPU found")
    assert auto["reason"].endswith("; the preview engine will be installed")
    assert auto["refused"] == [] and auto["fallback"] is None
    assert {c["name"] for c in auto["checks"]} >= {"python", "venv", "disk"}
    cuda = json.loads(
        run_backend("install", "--venv", str(venv), "--profile", "cuda", "--choose").stdout
    )
    assert cuda["profile"] == "cuda121" and cuda["fallback"] == "cpu"
    assert "nvidia driver" in {c["name"] for c in cuda["refused"]}
    assert not venv.exists()
    # a refused install names the profile that works here, as JSON for the add-on
    proc = run_backend("install", "--venv", str(venv), "--profile", "cuda", "--tool", "pip")
    assert proc.returncode == 3
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("REFUSED "))
    body = json.loads(line[len("REFUSED ") :])
    assert body["profile"] == "cuda121" and body["fallback"] == "cpu"
    assert body["refused"][0]["name"] and not venv.exists()


def test_a_python_without_ensurepip_is_refused_with_the_package_to_install(tmp_path):
    """Debian's and Ubuntu's Pythons ship ensurepip separately (python3-venv): without it
    ``python -m venv`` cannot put pip in the venv; the check says what to install."""
    from backend.install import platform as platform_mod

    fake = tmp_path / "python3.13"
    fake.write_text('#!/bin/sh\ncase "$*" in *ensurepip*) exit 1;; *) echo 3.13;; esac\n')
    fake.chmod(0o755)
    assert platform_mod.can_make_venv(sys.executable)
    assert not platform_mod.can_make_venv(str(fake))
    check = platform_mod._venv_check(str(fake), "3.13")
    assert not check.ok and "python3.13-venv or python3-venv" in check.message


def test_a_cpu_venv_on_a_newer_python_counts_as_made(tmp_path):
    """A cpu venv made from Blender's Python 3.13 is not made again on a re-run; a CUDA
    venv must be 3.11."""
    venv = tmp_path / "v"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    py = venv / "bin" / "python"
    py.write_text("#!/bin/sh\necho 3.13\n")
    py.chmod(0o755)
    cpu = Runner(build_plan(venv, "cpu", base_python="/usr/bin/python3.13"))
    assert cpu.satisfied(cpu.plan.steps[0])
    cuda = Runner(build_plan(venv, "cuda121", base_python="/usr/bin/python3.11"))
    assert not cuda.satisfied(cuda.plan.steps[0])
