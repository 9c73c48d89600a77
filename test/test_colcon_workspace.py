"""The README's colcon workspace instructions, run exactly as written, build both packages."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def documented_colcon_command() -> str:
    block = re.search(r"<!-- colcon-workspace -->\s*```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block, "README.md must keep the marked colcon workspace block"
    commands = [line for line in block.group(1).splitlines() if line.startswith("colcon build")]
    assert len(commands) == 1
    return commands[0]


@pytest.mark.slow
def test_documented_colcon_build(tmp_path):
    workspace = tmp_path / "ros2_ws"
    src = workspace / "src" / "refine_perception"
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    venv = Path(sys.prefix)
    env = {**os.environ, "AMENT_PREFIX_PATH": str(venv), "CMAKE_PREFIX_PATH": str(venv)}
    build = subprocess.run(documented_colcon_command(), shell=True, cwd=workspace, env=env, capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    assert "2 packages finished" in build.stdout

    install = workspace / "install"
    check = (
        f"source {install}/setup.bash && python -c 'import refine_msgs.msg, refine_perception; "
        "print(refine_msgs.msg.__file__); print(refine_perception.__file__)' && "
        f"{install}/refine_perception/lib/refine_perception/refine-perception launch camera --show-args"
    )
    run = subprocess.run(["bash", "-c", check], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    msgs_file, package_file, *usage = run.stdout.splitlines()
    assert msgs_file.startswith(str(install / "refine_msgs")), msgs_file
    assert package_file.startswith(str(install / "refine_perception")), package_file
    assert any("rate_hz:=" in line for line in usage)
    for name in ("camera.launch.py",):
        assert (install / "refine_perception/share/refine_perception/launch" / name).is_file()
    assert (install / "refine_perception/share/refine_perception/config/camera_source.yaml").is_file()
    for executable in ("camera_source", "image_converter", "topic_monitor"):
        assert (install / "refine_perception/lib/refine_perception" / executable).is_file()


@pytest.mark.slow
def test_console_scripts_on_path_after_activate_in_a_clean_environment(tmp_path):
    # The README's commands after a plain `source .venv/bin/activate`, with none of the variables that
    # `./dev run` / `./dev shell` export (AMENT_PREFIX_PATH, RMW_IMPLEMENTATION, the lib/<package> PATH).
    import signal
    import time

    venv = Path(sys.prefix)
    clean = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "ROS_LOG_DIR": str(tmp_path / "ros_log")}
    activate = f"source '{venv}/bin/activate' && "
    commands = (
        "refine-perception --help && refine-train --help && refine-perception launch camera --show-args && "
        "command -v lane_detector camera_source image_converter topic_monitor lane_scorer bag_player "
        "instance_segmenter"
    )
    result = subprocess.run(["env", "-i", *(f"{k}={v}" for k, v in clean.items()), "bash", "-c", activate + commands],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "usage: refine-perception" in result.stdout and "usage: refine-train" in result.stdout
    assert "rate_hz:=" in result.stdout
    found = result.stdout.split()[-7:]
    assert all(path.startswith(f"{venv}/bin/") for path in found), found

    # A node started this way finds its model through the ament index and talks to the RMW layer.
    node = subprocess.Popen(["env", "-i", *(f"{k}={v}" for k, v in clean.items()), "bash", "-c",
                             activate + "exec lane_detector"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 90
        assert node.stdout is not None
        while time.monotonic() < deadline:
            line = node.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "[lane_detector]: lanes from" in line:
                break
        assert any("[lane_detector]: lanes from" in line for line in lines), "".join(lines)[-3000:]
    finally:
        if node.poll() is None:
            os.killpg(node.pid, signal.SIGINT)
        output, _ = node.communicate(timeout=60)
    assert node.returncode == 0, "".join(lines)[-2000:] + output[-2000:]
