import os
import pathlib

import pytest

BUILD = pathlib.Path(os.environ.get("CROSVM_BUILD_DIR", pathlib.Path(__file__).parents[2] / "build"))


def kvm_unavailable_reason():
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError as error:
        return f"/dev/kvm cannot be opened ({error.strerror})"
    os.close(fd)
    return None


needs_kvm = pytest.mark.skipif(kvm_unavailable_reason() is not None,
                               reason=kvm_unavailable_reason() or "")


@pytest.fixture
def launcher():
    path = BUILD / "launcher" / "crosvm-launch"
    assert path.exists(), f"{path} is not built"
    return str(path)


@pytest.fixture
def guest_program():
    def path(name):
        program = BUILD / "tests" / "guest" / f"{name}.elf"
        assert program.exists(), f"{program} is not built"
        return str(program)
    return path
