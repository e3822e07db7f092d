"""Layering, checked on the imports of every module's syntax tree (not by grepping text):
the library never imports Streamlit or the app, each package imports only the layers below
it, and TensorFlow loads only for the LSTM detector."""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP = {"streamlit", "components", "app_pages", "app"}
#: package -> the project packages it may import (anything else of the project is a layering error).
ALLOWED = {
    "store": set(),
    "data": {"store"},
    "detectors": {"events", "store"},        # the pipeline builds events; the LSTM caches models in store
    "events": {"detectors"},
    "evaluation": {"detectors", "events"},
    "options_flow": set(),
    "explain": {"events", "options_flow", "store"},   # explanations cite the news window of events
    "alerts": {"store"},
    "scan": {"alerts", "data", "detectors", "evaluation", "store"},
    "components": {"alerts", "data", "detectors", "events", "evaluation", "explain", "options_flow", "scan", "store"},
    "app_pages": {"alerts", "components", "data", "detectors", "events", "evaluation", "explain", "options_flow",
                  "scan", "store"},
}
PROJECT = set(ALLOWED) | {"app"}


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports, at any depth (functions included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_every_import_respects_the_layers():
    problems = []
    for package, allowed in ALLOWED.items():
        for path in (ROOT / package).rglob("*.py"):
            imported = imported_modules(path)
            library = package not in ("components", "app_pages")
            bad = {m for m in imported if m in PROJECT and m != package and m not in allowed}
            if library:
                bad |= imported & APP
            if bad:
                problems.append(f"{path.relative_to(ROOT)} imports {', '.join(sorted(bad))}")
    assert not problems, problems


def test_the_check_sees_every_import_form(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text("from streamlit import session_state\ndef f():\n    import components.views\n")
    assert imported_modules(sample) == {"streamlit", "components"}


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_library_does_not_import_streamlit_at_run_time():
    out = _run("import sys, data, data.demo, data.csv, data.export, detectors, explain, store, store.cases\n"
               "import events.build, evaluation.metrics, evaluation.backtest, options_flow, detectors.pipeline\n"
               "import scan, scan.job, scan.cli, scan.background, alerts, data.market_store\n"
               "print('streamlit' in sys.modules)")
    assert out == "False"


def test_tensorflow_only_imported_for_the_lstm():
    out = _run("import sys, detectors\n"
               "for name in detectors.available():\n"
               "    if name != 'lstm_autoencoder': detectors.create(name)\n"
               "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    assert out == "False False"


def test_the_default_detection_and_built_in_explainer_import_no_heavy_library():
    """scikit-learn, the openai client and Alembic cost the Explorer's first page about 1.2 s:
    they load only for the Isolation Forest or LSTM, a configured model, or a migration."""
    out = _run("import sys, detectors, explain, store.cases\n"
               "from data.demo import demo_market\n"
               "market = demo_market(seed=1)\n"
               "detectors.available('candles')\n"
               "events = detectors.detect(market.candles).events\n"
               "explain.explain_events(events, market.candles, use_cache=False)\n"
               "print(*(m in sys.modules for m in ('sklearn', 'openai', 'alembic')))")
    assert out == "False False False"


def test_no_pages_folder_lets_streamlit_skip_app_py():
    """A ``pages/`` folder beside app.py turns on Streamlit's folder mode: a fresh server first
    opened at /cases would run that page without app.py and its sign-in gate."""
    assert not (ROOT / "pages").exists()
    assert (ROOT / "app_pages" / "explorer.py").is_file()
