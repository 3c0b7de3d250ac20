"""Pretrained models: the registry, where a model is found (bundled, cached, downloaded), checksums,
offline use, and the `lnca models` commands.

Downloads run the real huggingface_hub code against FakeHub, a stand-in Hub on 127.0.0.1 that answers
like huggingface.co does for a file stored with LFS: HEAD /{repo}/resolve/{revision}/{file} is a 302
to another host, carrying X-Repo-Commit, X-Linked-Etag (the sha256) and X-Linked-Size; a GET there
returns the bytes. HF_ENDPOINT points at it and the cache lives in tmp_path. Every model here is a
tiny random one: nothing is trained.
"""
import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import lnca, random_model, write_photo
from lnca_cli import hub
from lnca_cli.hub import TASKS, ModelEntry, Registry, WeightsError, load_model, load_registry, save_weights

REPO, REVISION = "lnca-project/lnca-weights", "v0.1.0"
COMMIT = hashlib.sha1(b"a commit of the fake hub").hexdigest()


class FakeHub:
    """A Hugging Face Hub stand-in: serves `files[(repo, revision, filename)]` and logs each request."""

    def __init__(self):
        self.files: dict[tuple[str, str, str], bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self.truncate = False  # send half of each file (with an honest Content-Length for that half)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.running = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.running.start()

    def stop(self) -> None:
        if self.running.is_alive():
            self.server.shutdown()
            self.server.server_close()

    def answer(self, request: BaseHTTPRequestHandler) -> tuple[int, dict, bytes]:
        self.requests.append((request.command, request.path))
        blobs = {hashlib.sha256(data).hexdigest(): data for data in self.files.values()}
        if (lfs := re.fullmatch(r"/lfs/([0-9a-f]{64})", request.path)) and lfs[1] in blobs:
            data = blobs[lfs[1]]
            return 200, {}, data[: len(data) // 2] if self.truncate else data
        resolve = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", request.path)
        if resolve is None or all(key[0] != resolve[1] for key in self.files):
            return 404, {"X-Error-Code": "RepoNotFound"}, b""
        if resolve.groups() not in self.files:
            return 404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT}, b""
        data = self.files[resolve.groups()]
        sha = hashlib.sha256(data).hexdigest()
        return 302, {"Location": f"http://localhost:{self.server.server_port}/lfs/{sha}", "X-Repo-Commit": COMMIT,
                     "X-Linked-Etag": f'"{sha}"', "X-Linked-Size": str(len(data))}, b""

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self):
                self.reply(send_body=False)

            def do_GET(self):
                self.reply(send_body=True)

            def reply(self, send_body: bool) -> None:
                status, headers, body = fake.answer(self)
                self.send_response(status)
                for key, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(key, value)
                self.end_headers()
                if send_body:
                    self.wfile.write(body)

            def log_message(self, *args):
                pass

        return Handler


def weights_bytes(tmp_path, task: str, seed: int) -> bytes:
    path = tmp_path / f"made-{task}-{seed}.safetensors"
    save_weights(random_model(seed=seed), path, {"task": task})
    return path.read_bytes()


def entry(name: str, task: str, data: bytes | None) -> ModelEntry:
    """A registry entry; without data it is not published (no sha256 yet)."""
    facts = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)} if data else {}
    return ModelEntry(name, task, REPO, REVISION, f"{task}.safetensors", **facts)


@pytest.fixture
def weights_dir(tmp_path, monkeypatch):
    """The package's weights/ folder, here an empty one in tmp_path."""
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setattr(hub, "BUNDLED_DIRS", (folder,))
    return folder


@pytest.fixture
def fake_hub():
    server = FakeHub()
    yield server
    server.stop()


@pytest.fixture
def models(tmp_path, monkeypatch, weights_dir, fake_hub):
    """denoise-v1 bundled, deblur-v1 only on the (fake) Hub, denoise-masked-v1 not published yet.
    Returns the bytes of the published files."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # the cache is HF_HOME/hub
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.url)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    data = {"denoise-v1": weights_bytes(tmp_path, "denoise", 1), "deblur-v1": weights_bytes(tmp_path, "deblur", 2)}
    (weights_dir / "denoise.safetensors").write_bytes(data["denoise-v1"])
    fake_hub.files[(REPO, REVISION, "deblur.safetensors")] = data["deblur-v1"]
    fake_hub.files[(REPO, REVISION, "README.md")] = b"the repo holds other files too"
    entries = [entry("denoise-v1", "denoise", data["denoise-v1"]), entry("deblur-v1", "deblur", data["deblur-v1"]),
               entry("denoise-masked-v1", "denoise-masked", None)]
    hub.save_registry(Registry(weights_dir / "models.json", {e.name: e for e in entries},
                               {e.task: e.name for e in entries}))
    return data


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "a.png"
    write_photo(path)
    return path


def cached_blobs(tmp_path) -> list:
    """The files in the cache of HF_HOME. Older huggingface_hub versions keep a partial download as
    *.incomplete, to resume it; that is never used as the file, so it is left out here."""
    return [p for p in (tmp_path / "hf" / "hub").rglob("blobs/*") if p.is_file() and p.suffix != ".incomplete"]


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


# ---------------------------------------------------------------- the registry


def test_shipped_registry_has_a_default_model_for_every_task():
    registry = load_registry()
    assert set(registry.defaults) == set(TASKS)
    for task in TASKS:
        model = registry.entry(task)  # a task's name stands for its default model
        assert model.task == task and model.name == registry.defaults[task]
    for model in registry.models.values():
        assert model.repo_id == REPO and model.revision != "main"  # downloads are pinned
        assert model.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", model.sha256)
        assert (model.sha256 is None) == (model.size is None)


def test_registry_whose_default_names_no_such_model_is_refused(weights_dir):
    (weights_dir / "models.json").write_text(json.dumps({"defaults": {t: "gone" for t in TASKS}, "models": {}}))
    with pytest.raises(WeightsError, match="default model of task 'denoise'"):
        load_registry()


def test_unknown_model_name_lists_the_known_ones(models):
    with pytest.raises(WeightsError, match="unknown model 'nope'.*deblur-v1"):
        load_model("nope")


def test_a_folder_named_like_a_model_does_not_hide_it(models, tmp_path, monkeypatch, weights_dir):
    (tmp_path / "denoise").mkdir()
    monkeypatch.chdir(tmp_path)
    assert load_model("denoise").info["path"] == str(weights_dir / "denoise.safetensors")


# ---------------------------------------------------------------- bundled


def test_bundled_model_is_used_without_the_network(models, fake_hub, weights_dir):
    model = load_model("denoise")
    assert model.info["path"] == str(weights_dir / "denoise.safetensors")
    assert fake_hub.requests == []


def test_tampered_bundled_file_is_refused_by_loading_and_by_verify(models, weights_dir, photo):
    bundled = weights_dir / "denoise.safetensors"
    data = bytearray(bundled.read_bytes())
    data[-1] ^= 1  # still a valid safetensors file: only the checksum can tell
    bundled.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256 does not match model 'denoise-v1'"):
        load_model("denoise")
    result = lnca("denoise", photo)
    assert result.exit_code == 2 and "sha256 does not match" in one_line(result.stderr)
    assert not photo.with_name("a_denoise.png").exists()
    result = lnca("models", "verify")
    assert result.exit_code == 1
    assert re.search(r"^BAD\s+denoise-v1\s+bundled", result.stdout, re.M)
    assert bundled.exists()  # refused, but a packaged file is not ours to delete


# ---------------------------------------------------------------- downloads and the cache


def test_download_once_then_use_the_cache_with_the_server_stopped(models, fake_hub, tmp_path, photo):
    result = lnca("models", "download", "deblur")
    assert result.exit_code == 0, result.stderr
    assert [method for method, _ in fake_hub.requests] == ["HEAD", "GET"]
    assert fake_hub.requests[1][1].startswith("/lfs/")  # followed the redirect, like a CDN download
    path = lnca("models", "path", "deblur-v1").stdout.strip()
    assert path.startswith(str(tmp_path / "hf" / "hub")) and open(path, "rb").read() == models["deblur-v1"]
    assert re.search(r"deblur-v1 .* cached", lnca("models", "list").stdout)

    fake_hub.stop()
    result = lnca("deblur", photo)
    assert result.exit_code == 0, result.stderr
    assert photo.with_name("a_deblur.png").is_file()
    assert len(fake_hub.requests) == 2  # a cache hit asks nothing


@pytest.mark.parametrize("how", ["HF_HUB_OFFLINE", "--offline"])
def test_offline_uses_only_local_files_and_says_how_to_get_the_rest(models, fake_hub, monkeypatch, photo, how):
    def offline(*args):
        with monkeypatch.context() as env:
            if how == "HF_HUB_OFFLINE":
                env.setenv("HF_HUB_OFFLINE", "1")
                return lnca(*args)
            return lnca(*args, "--offline")

    result = offline("deblur", photo)
    assert result.exit_code == 2
    message = one_line(result.stderr)
    assert "'deblur-v1' is not available offline" in message
    assert "lnca models download deblur-v1" in message and "--model" in message
    assert offline("denoise", photo).exit_code == 0  # the bundled model needs no network
    assert fake_hub.requests == []

    assert lnca("models", "download", "deblur").exit_code == 0
    asked = len(fake_hub.requests)
    assert offline("deblur", photo).exit_code == 0  # now from the cache
    assert len(fake_hub.requests) == asked


def test_models_download_respects_hf_hub_offline(models, fake_hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = lnca("models", "download", "deblur")
    assert result.exit_code == 1 and "not available offline" in one_line(result.stderr)
    assert fake_hub.requests == []


def test_hf_hub_cache_names_the_cache_folder(models, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    assert lnca("models", "download", "deblur").exit_code == 0
    assert lnca("models", "path", "deblur").stdout.startswith(str(tmp_path / "elsewhere"))
    assert cached_blobs(tmp_path) == []  # nothing in HF_HOME/hub


def test_tampered_download_is_refused_and_not_kept(models, fake_hub, tmp_path, photo):
    fake_hub.files[(REPO, REVISION, "deblur.safetensors")] = weights_bytes(tmp_path, "deblur", seed=99)
    result = lnca("models", "download", "deblur")
    assert result.exit_code == 1
    assert "does not match its sha256" in one_line(result.stderr)
    assert cached_blobs(tmp_path) == []
    assert hub.cached_file(load_registry().entry("deblur")) is None
    result = lnca("deblur", photo, "--offline")  # the bad file is not there to be used
    assert result.exit_code == 2 and "not available offline" in result.stderr


def test_truncated_download_is_refused_and_not_kept(models, fake_hub, tmp_path):
    fake_hub.truncate = True
    result = lnca("models", "download", "deblur")
    assert result.exit_code == 1
    assert "download of deblur.safetensors" in one_line(result.stderr)
    assert cached_blobs(tmp_path) == []
    assert hub.cached_file(load_registry().entry("deblur")) is None


def test_file_missing_on_the_hub_is_a_clear_error(models, fake_hub, photo):
    del fake_hub.files[(REPO, REVISION, "deblur.safetensors")]
    result = lnca("models", "download", "deblur")
    assert result.exit_code == 1
    message = one_line(result.stderr)
    assert "deblur-v1" in message and "404" in message and "Entry Not Found" in message
    assert lnca("deblur", photo).exit_code == 2


def test_unreachable_hub_is_a_clear_error(models, fake_hub, monkeypatch, photo):
    fake_hub.stop()  # nothing listens on its port now: connection refused
    # huggingface_hub retries a refused connection with back-off (23 s of sleeps); don't wait for it here
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    result = lnca("models", "download", "deblur")
    assert result.exit_code == 1
    message = result.stderr.strip().splitlines()[-1]  # huggingface_hub logs its retries above it
    assert f"could not be downloaded from {fake_hub.url}" in message
    assert "lnca models download deblur-v1" in message
    assert lnca("deblur", photo).exit_code == 2


def test_corrupted_cache_is_reported_removed_and_downloaded_again(models, fake_hub, tmp_path, photo):
    assert lnca("models", "download", "deblur").exit_code == 0
    [blob] = cached_blobs(tmp_path)
    blob.write_bytes(b"not the model")
    result = lnca("models", "verify")
    assert result.exit_code == 1 and re.search(r"^BAD\s+deblur-v1\s+cached", result.stdout, re.M)
    assert re.search(r"^ok\s+denoise-v1\s+bundled", result.stdout, re.M)

    result = lnca("deblur", photo, "--offline")
    assert result.exit_code == 2 and "failed its sha256 check and was removed" in result.stderr
    assert cached_blobs(tmp_path) == []
    assert lnca("models", "download", "deblur").exit_code == 0
    assert lnca("models", "verify").exit_code == 0


def test_unpublished_model_is_never_requested(models, fake_hub, photo):
    result = lnca("models", "download", "--all")
    assert result.exit_code == 1  # deblur-v1 downloaded, denoise-masked-v1 cannot be
    assert "denoise-masked-v1' is not published yet" in result.stderr
    assert hub.cached_file(load_registry().entry("deblur")) is not None
    assert lnca("restore", "--task", "denoise-masked", photo).exit_code == 2
    assert not any("denoise-masked" in path for _, path in fake_hub.requests)


# ---------------------------------------------------------------- the models commands


def test_models_list_says_where_each_model_is(models):
    result = lnca("models", "list")
    assert result.exit_code == 0, result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip().endswith(
        ("bundled", "cached", "remote", "unpublished"))}
    assert rows.keys() == {"denoise-v1", "deblur-v1", "denoise-masked-v1"}
    assert rows["denoise-v1"].split()[-1] == "bundled" and "kB" in rows["denoise-v1"]
    assert rows["deblur-v1"].split()[-1] == "remote"
    assert rows["denoise-masked-v1"].split()[-1] == "unpublished"


def test_models_path_prints_just_the_path_or_fails_in_one_line(models, weights_dir, fake_hub):
    result = lnca("models", "path", "denoise")
    assert result.exit_code == 0 and result.stdout == f"{weights_dir / 'denoise.safetensors'}\n"
    result = lnca("models", "path", "deblur")  # only on the Hub: path never downloads
    assert result.exit_code == 1 and result.stdout == ""
    assert "lnca models download deblur-v1" in one_line(result.stderr)
    assert fake_hub.requests == []


def test_models_info_shows_the_registry_entry(models):
    result = lnca("models", "info", "deblur")
    assert result.exit_code == 0, result.stderr
    sha = hashlib.sha256(models["deblur-v1"]).hexdigest()
    for expected in ("deblur-v1", "its default model", f"{REPO} at {REVISION}", "deblur.safetensors", sha,
                     "remote"):
        assert expected in result.stdout
    assert lnca("models", "info", "nope").exit_code == 1


def test_models_download_needs_names_or_all(models):
    assert lnca("models", "download").exit_code == 2


# ---------------------------------------------------------------- registering new weights


def test_register_records_sha256_and_size_and_the_model_then_loads(models, weights_dir, tmp_path):
    path = weights_dir / "denoise-masked.safetensors"
    path.write_bytes(weights_bytes(tmp_path, "denoise-masked", seed=3))
    with pytest.raises(WeightsError, match="has no sha256 in the registry.*lnca models register"):
        load_model(task="denoise-masked")
    result = lnca("models", "register", path, "--name", "denoise-masked-v1")
    assert result.exit_code == 0, result.stderr
    registered = json.loads((weights_dir / "models.json").read_text())["models"]["denoise-masked-v1"]
    assert registered["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert registered["size"] == path.stat().st_size and registered["revision"] == REVISION
    assert load_model(task="denoise-masked").info["path"] == str(path)


def test_register_refuses_weights_of_another_task_and_new_names_without_a_task(models, weights_dir, tmp_path):
    path = tmp_path / "other.safetensors"
    path.write_bytes(weights_bytes(tmp_path, "deblur", seed=4))
    assert "trained for task 'deblur'" in lnca("models", "register", path, "--name", "denoise-v1").stderr
    assert "give the task of model" in lnca("models", "register", path, "--name", "deblur-v2").stderr
    before = (weights_dir / "models.json").read_text()
    result = lnca("models", "register", path, "--name", "deblur-v2", "--task", "deblur")
    assert result.exit_code == 0, result.stderr
    assert json.loads((weights_dir / "models.json").read_text())["models"]["deblur-v2"]["filename"] == path.name
    assert before != (weights_dir / "models.json").read_text()


def test_models_info_takes_a_weights_file_and_shows_its_record(tiny_weights):
    from conftest import lnca

    result = lnca("models", "info", tiny_weights)
    assert result.exit_code == 0, result.stderr
    assert "arch:" in result.stdout and '"latent_channels": 8' in result.stdout
    assert "task:" in result.stdout and "untrained" in result.stdout
    missing = lnca("models", "info", "nowhere.safetensors")
    assert missing.exit_code == 1 and "nowhere.safetensors" in missing.stderr
