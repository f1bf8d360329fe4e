"""What the pytest suites that boot tiny guests share: the build tree, a
skip marker for machines without a usable /dev/kvm, and the guest programs."""
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
def guest_program():
    def path(name):
        program = BUILD / "tests" / "guest" / f"{name}.elf"
        assert program.exists(), f"{program} is not built"
        return str(program)
    return path
