"""The committed generated modules must match what `make proto` produces from protos/."""
import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_generated_code_is_up_to_date(tmp_path):
    spec = importlib.util.spec_from_file_location("genproto", ROOT / "tools" / "genproto.py")
    genproto = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(genproto)
    fresh = genproto.generate(tmp_path)
    assert fresh, "no protos compiled"
    for path in fresh:
        committed = ROOT / "src" / path.relative_to(tmp_path)
        assert committed.exists(), f"{committed} missing: run `make proto`"
        assert committed.read_text() == path.read_text(), f"{committed} is stale: run `make proto`"
