# KD Studio on Hugging Face Spaces (Docker SDK) or any container host: the Streamlit dashboard on port 8501.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    KD_HOSTED=1 \
    KD_RUNS_DIR=/data/runs \
    KD_CACHE_DIR=/data/cache \
    KD_UPLOADS_DIR=/data/uploads \
    KD_MAX_UPLOAD_MB=50 \
    HF_HOME=/data/hf \
    STREAMLIT_SERVER_FILE_WATCHER_TYPE=none

# gperftools' tcmalloc serves every process of the Space instead of glibc's malloc, whose heap fragments under
# activations of changing shapes: a distillation trained x0.89 the time at the same peak memory (BENCHMARKS.md 4g).
# Training workers would choose it themselves once installed (distill_core/malloc_choice.py); LD_PRELOAD gives it
# to the dashboard process too (the Playground's predictions). Each run records its malloc (status.json).
RUN apt-get update && apt-get install -y --no-install-recommends libtcmalloc-minimal4 \
    && rm -rf /var/lib/apt/lists/*
ENV LD_PRELOAD=libtcmalloc_minimal.so.4

# Spaces run the container as user 1000; give it a home and a writable data folder.
RUN useradd --create-home --uid 1000 user && mkdir -p /data && chown user:user /data
WORKDIR /app

# Dependencies first, so code changes do not reinstall them. torch comes from the CPU wheel index
# (the default PyPI wheel is a multi-GB CUDA build).
COPY --chown=user:user requirements.txt .
# Every pinned dependency except the project itself (`-e .`), which needs the code and is installed below.
RUN grep -v '^-e ' requirements.txt > /tmp/deps.txt \
    && pip install --extra-index-url https://download.pytorch.org/whl/cpu -r /tmp/deps.txt

COPY --chown=user:user distill_core ./distill_core
COPY --chown=user:user app_pages ./app_pages
COPY --chown=user:user .streamlit ./.streamlit
COPY --chown=user:user data ./data
COPY --chown=user:user streamlit_app.py README.md pyproject.toml ./
# Editable, like requirements.txt: the product finds the repository's folders (./data) next to the package.
RUN pip install --no-deps -e .

USER user
# The showcase (a fine-tuned teacher and two distilled students, evaluated and benchmarked) is built into the
# image, into the store's gallery ($KD_RUNS_DIR/gallery, since KD_HOSTED=1), so a visitor sees it at once; about
# 10 minutes on 2 CPU cores, ~250 MB of models. tests/test_showcase.py runs this same line outside Docker, so it
# cannot rot. The caches it leaves (tokenised data, teacher logits, under KD_CACHE_DIR) are not needed at run time.
# A Space with persistent storage mounts /data over this: keep KD_RUNS_DIR on the image there, or rebuild it.
RUN python -m distill_core showcase --quiet && rm -rf /data/cache

EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health')"
CMD ["streamlit", "run", "streamlit_app.py", "--server.port", "8501", "--server.address", "0.0.0.0"]
