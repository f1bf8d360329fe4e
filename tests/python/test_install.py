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


def test_meson_install_puts_everything_where_debian_finds_it(tmp_path):
    """`meson install` with the default prefix (/usr/local): the Python
    package lands in a directory on Debian's python3's sys.path,
    `man crosvm-launch` works, and the bash completion completes."""
    build = os.environ["CROSVM_BUILD_DIR"]
    destdir = tmp_path / "root"
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LD_LIBRARY_PATH")}
    installed = subprocess.run(["meson", "install", "-C", build, "--destdir", str(destdir), "--no-rebuild"],
                               capture_output=True, text=True, env=environment, timeout=600)
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    prefix = subprocess.run(["meson", "introspect", "--buildoptions", build], capture_output=True, text=True,
                            check=True).stdout
    prefix = next(option["value"] for option in __import__("json").loads(prefix) if option["name"] == "prefix")
    root = pathlib.Path(str(destdir) + prefix)

    packages = list(root.glob("lib/python3*/dist-packages/crosvm/__init__.py"))
    assert len(packages) == 1, sorted(str(p) for p in root.rglob("__init__.py"))
    site = str(packages[0].parent.parent)
    searched = subprocess.run(["/usr/bin/python3", "-c", "import sys; print('\\n'.join(sys.path))"],
                              capture_output=True, text=True, env=environment, check=True).stdout.split()
    assert site[len(str(destdir)):] in searched, (site, searched)
    probe = subprocess.run(["/usr/bin/python3", "-c", "import crosvm; print(crosvm.version(), crosvm.__file__)"],
                           capture_output=True, text=True, env={**environment, "PYTHONPATH": site}, cwd=tmp_path)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split()[0] == crosvm.version() and probe.stdout.split()[1].startswith(site)

    manual = subprocess.run(["man", "crosvm-launch"], capture_output=True, text=True,
                            env={**environment, "MANPATH": str(root / "share" / "man"), "MANPAGER": "cat",
                                 "PAGER": "cat", "MANWIDTH": "80"})
    assert manual.returncode == 0, manual.stderr
    for words in ("crosvm-launch", "powerbtn SOCKET", "--rwdisk PATH[,KEYS]", "CROSVM'S RUN OPTIONS", "--gpu"):
        assert words in manual.stdout, words

    completion = root / "share" / "bash-completion" / "completions" / "crosvm-launch"
    completed = subprocess.run(
        ["bash", "-c", f"source {completion}; COMP_WORDS=(crosvm-launch run --rw); COMP_CWORD=2; _crosvm_launch; "
                       "echo ${COMPREPLY[@]}; COMP_WORDS=(crosvm-launch po); COMP_CWORD=1; _crosvm_launch; "
                       "echo ${COMPREPLY[@]}"], capture_output=True, text=True, check=True)
    assert completed.stdout.split("\n")[:2] == ["--rwdisk --rwroot", "powerbtn"]
