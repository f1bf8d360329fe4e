import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "common"))
from kvm_fixtures import BUILD, guest_program, needs_kvm  # noqa: E402,F401  (fixtures used by the tests)
