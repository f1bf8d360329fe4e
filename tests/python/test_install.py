"""`pip install .` as docs/python.md gives it: offline, with Debian's
packages only, into a virtual environment; the installed package works
without the build tree. Its build is also the test command's release build
(docs/building.md): warnings are errors in it, as in every build of CI."""
import os
import pathlib
import subprocess
import sys

import crosvm

SOURCE = pathlib.Path(__file__).resolve().parents[2]


def test_pip_installs_the_package_offline_into_a_virtual_environment(tmp_path):
    venv = tmp_path / "env"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(venv)], check=True)
    # Not the build tree's package: only what pip installs.
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LD_LIBRARY_PATH")}
    environment["TMPDIR"] = str(tmp_path)
    install = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--no-build-isolation", "--no-index",
         "--config-settings=setup-args=-Dbuildtype=release",
         "--config-settings=setup-args=-Dwerror=true",
         "--config-settings=setup-args=-Dtests=false",
         "--config-settings=setup-args=-Dpython=enabled", str(SOURCE)],
        capture_output=True, text=True, env=environment, timeout=1500)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]

    probe = ("import crosvm, sys\n"
             "print(crosvm.__file__)\n"
             "print(crosvm.version())\n"
             "try:\n"
             "    crosvm.Vm(crosvm.VmConfig(kernel='/nonexistent/bzImage'))\n"
             "except crosvm.IoError as error:\n"
             "    print(error.name)\n")
    used = subprocess.run([str(venv / "bin" / "python"), "-c", probe], capture_output=True,
                          text=True, env=environment, cwd=tmp_path, timeout=60)
    assert used.returncode == 0, used.stderr
    location, version, error = used.stdout.split()
    assert location.startswith(str(venv)), location
    assert version == crosvm.version()  # the build tree's, from the same sources
    assert error == "CROSVM_ERROR_IO"
    print(install.stdout.splitlines()[-1], file=sys.stderr)
