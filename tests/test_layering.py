"""The library layers never pull in Streamlit, and TensorFlow loads only for the LSTM detector."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_library_does_not_import_streamlit():
    out = _run("import sys, data, data.demo, data.csv, data.export, detectors, explain, store, store.cases\n"
               "import events.build, evaluation.metrics, detectors.zscore\n"
               "print('streamlit' in sys.modules)")
    assert out == "False"


def test_tensorflow_only_imported_for_the_lstm():
    out = _run("import sys, detectors\n"
               "for name in detectors.available():\n"
               "    if name != 'lstm_autoencoder': detectors.create(name)\n"
               "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    assert out == "False False"


def test_no_streamlit_import_in_library_sources():
    for package in ("data", "detectors", "explain", "store"):
        for path in (ROOT / package).rglob("*.py"):
            assert "import streamlit" not in path.read_text(encoding="utf-8"), path
