"""Settings: who the analyst is, which explainer and embedder are active, connection test."""
import streamlit as st

from components import services, state
from components.views import literal

st.title("Settings")

st.subheader("Analyst")
user = getattr(st, "user", None)
if user is not None and user.get("is_logged_in"):
    st.write(f"Signed in as **{literal(services.analyst_name())}** (recorded in the case log's audit trail).")
else:
    st.text_input("Your name (recorded in the case log's audit trail)", max_chars=80,
                  **state.kept(state.ANALYST, "analyst"))

st.subheader("Explanations")
config = services.explainer_config()
if config.enabled:
    st.write("Active explainer: **LLM**. Events the model cannot explain fall back to the built-in "
             "explainer, with the reason.")
    # Plain text, never Markdown: the URL is the user's setting (credentials removed) and the
    # test message may quote the server.
    st.text(f"Model {config.model} at {config.display_url} (timeout {config.timeout:g} s)")
    if st.button("Test connection", icon=":material/network_check:"):
        from explain import test_connection
        with st.spinner("Sending one small request…"):
            ok, message = test_connection(config)
        (st.success if ok else st.error)("Connection works." if ok else "Connection failed.")
        st.text(message)
else:
    st.write("Active explainer: **built-in** (rule-based, from the evidence; no network).")
st.caption("Configure a model with the environment variables OPENAI_API_KEY, OPENAI_BASE_URL (for Ollama, "
           "vLLM or LM Studio) and OPENAI_MODEL, or the same keys in .streamlit/secrets.toml. The key is never "
           "shown, logged or exported.")
st.slider("Weight of the model's risk score in the combined risk", 0.0, 1.0, step=0.05,
          **state.kept(state.JUDGE_WEIGHT, 0.4),
          help="combined risk = w × model risk + (1 − w) × statistical severity (default 0.4).")

st.subheader("Headline embeddings")
from detectors.embedders import EMBEDDERS, available_embedders  # noqa: E402

names = available_embedders()
if state.value(state.EMBEDDER) not in names:
    state.set_value(state.EMBEDDER, names[0])
st.radio("Embedder for the text detector", names, horizontal=True, format_func=lambda n: EMBEDDERS[n].label,
         **state.kept(state.EMBEDDER, names[0]),
         help="TF-IDF is built in and offline; sentence-transformers needs the optional text extra; "
              "openai uses the configured server.")

st.subheader("Storage")
from store import data_dir  # noqa: E402

st.write(f"Local data folder: `{data_dir()}` (candle cache, models, explanations, case log).")
