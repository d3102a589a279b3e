"""The folder model registry and image store: versions, conflicts, references, messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workbook.errors import ConfigError, RegistryError
from workbook.registry import (
    ImageRef,
    ImageStore,
    LocalImageStore,
    LocalModelRegistry,
    ModelRegistry,
    parse_image_ref,
    tree_digest,
    version_key,
)


def model_file(folder: Path, bias: float = 0.0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.json"
    path.write_text(json.dumps({"name": "m", "bias": bias}))
    return path


def context(folder: Path, text: str = "print('hi')") -> Path:
    (folder / "src").mkdir(parents=True, exist_ok=True)
    (folder / "model" / "m" / "v1").mkdir(parents=True, exist_ok=True)
    (folder / "src" / "score.py").write_text(text)
    (folder / "model" / "m" / "v1" / "model.json").write_text("{}")
    (folder / "Dockerfile").write_text("FROM scratch\n")
    return folder


META = {"entry_script": "src/score.py", "model_dir": "model", "env": {"A": "1"}, "model": "m:v1"}


# ---- models -------------------------------------------------------------------------------------


def test_local_registry_satisfies_the_protocol(tmp_path: Path) -> None:
    assert isinstance(LocalModelRegistry(tmp_path), ModelRegistry)
    assert isinstance(LocalImageStore(tmp_path), ImageStore)


def test_register_copies_files_and_reads_back(tmp_path: Path) -> None:
    registry = LocalModelRegistry(tmp_path / "state")
    mv = registry.register("safe-driver", model_file(tmp_path / "src"), "v1", tags={"k": "v"})
    assert (mv.name, mv.version, mv.id, mv.tags) == (
        "safe-driver",
        "v1",
        "safe-driver:v1",
        {"k": "v"},
    )
    assert mv.path == tmp_path / "state" / "models" / "safe-driver" / "v1" / "files"
    assert json.loads((mv.path / "model.json").read_text())["bias"] == 0.0
    meta = json.loads((mv.path.parent / "model.json").read_text())
    assert meta["version"] == "v1" and meta["digest"].startswith("sha256:")
    assert registry.get("safe-driver", "v1") == mv
    assert registry.get("safe-driver") == mv
    assert mv.registered


def test_properties_are_stored_and_must_be_strings(tmp_path: Path) -> None:
    registry = LocalModelRegistry(tmp_path / "state")
    source = model_file(tmp_path / "src")
    mv = registry.register("m", source, "v1", properties={"auc": "0.71", "gini": "0.42"})
    assert mv.properties == {"auc": "0.71", "gini": "0.42"}
    assert registry.get("m", "v1").properties == {"auc": "0.71", "gini": "0.42"}
    assert registry.register("m", source, "v2").properties == {}
    with pytest.raises(ConfigError, match=r"model m: properties\.auc must be a string"):
        registry.register("m", source, "v3", properties={"auc": 0.71})  # type: ignore[dict-item]
    assert [v.version for v in registry.list("m")] == ["v1", "v2"]


def test_register_a_folder_keeps_its_tree(tmp_path: Path) -> None:
    src = tmp_path / "src"
    model_file(src / "nested")
    (src / "weights.bin").write_bytes(b"\x00\x01")
    mv = LocalModelRegistry(tmp_path / "state").register("m", src, "v1")
    assert sorted(p.relative_to(mv.path).as_posix() for p in mv.path.rglob("*") if p.is_file()) == [
        "nested/model.json",
        "weights.bin",
    ]


def test_auto_versions_count_up_from_the_highest_v_n(tmp_path: Path) -> None:
    registry = LocalModelRegistry(tmp_path)
    src = model_file(tmp_path / "src")
    assert registry.register("m", src).version == "v1"
    assert registry.register("m", src).version == "v2"
    registry.register("m", src, "v10")
    registry.register("m", src, "candidate")
    assert registry.register("m", src).version == "v11"
    assert [mv.version for mv in registry.list("m")] == ["candidate", "v1", "v2", "v10", "v11"]
    assert registry.get("m").version == "v11"


def test_latest_is_natural_order_not_lexical(tmp_path: Path) -> None:
    registry = LocalModelRegistry(tmp_path)
    src = model_file(tmp_path / "src")
    for v in ("v9", "v10", "v2"):
        registry.register("m", src, v)
    assert registry.get("m").version == "v10"
    assert sorted(["v10", "v9", "v1"], key=version_key) == ["v1", "v9", "v10"]


def test_same_content_again_is_a_no_op(tmp_path: Path) -> None:
    registry = LocalModelRegistry(tmp_path)
    first = registry.register("m", model_file(tmp_path / "a"), "v1")
    again = registry.register("m", model_file(tmp_path / "b"), "v1", tags={"other": "tags"})
    assert again == first
    assert len(registry.list("m")) == 1


def test_other_content_for_a_registered_version_is_a_conflict(tmp_path: Path) -> None:
    registry = LocalModelRegistry(tmp_path)
    registry.register("m", model_file(tmp_path / "a"), "v1")
    with pytest.raises(RegistryError, match=r"model m:v1 is already registered with other files"):
        registry.register("m", model_file(tmp_path / "b", bias=1.0), "v1")
    assert json.loads((registry.get("m", "v1").path / "model.json").read_text())["bias"] == 0.0


def test_list_all_models(tmp_path: Path) -> None:
    registry = LocalModelRegistry(tmp_path)
    src = model_file(tmp_path / "src")
    registry.register("b", src, "v1")
    registry.register("a", src, "v2")
    registry.register("a", src, "v1")
    assert [mv.id for mv in registry.list()] == ["a:v1", "a:v2", "b:v1"]
    assert registry.list("missing") == []
    assert LocalModelRegistry(tmp_path / "empty").list() == []


def test_missing_versions_are_named_with_what_is_known(tmp_path: Path) -> None:
    registry = LocalModelRegistry(tmp_path)
    registry.register("m", model_file(tmp_path / "src"), "v1")
    with pytest.raises(RegistryError, match=r"model m:v3 is not registered .*known versions: v1"):
        registry.get("m", "v3")
    with pytest.raises(RegistryError, match=r"model other is not registered .*known models: m"):
        registry.get("other")


@pytest.mark.parametrize(
    ("name", "version", "field"),
    [
        ("", "v1", "name"),
        ("bad/name", "v1", "name"),
        ("m", "../v1", "version"),
        ("m", "-v", "version"),
    ],
)
def test_bad_names_and_versions(tmp_path: Path, name: str, version: str, field: str) -> None:
    with pytest.raises(ConfigError) as e:
        LocalModelRegistry(tmp_path).register(name, model_file(tmp_path / "src"), version)
    assert e.value.field == field


def test_missing_or_empty_source(tmp_path: Path) -> None:
    registry = LocalModelRegistry(tmp_path)
    with pytest.raises(RegistryError, match="does not exist"):
        registry.register("m", tmp_path / "nope", "v1")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RegistryError, match="holds no files"):
        registry.register("m", tmp_path / "empty", "v1")
    assert registry.list() == []


# ---- image references ---------------------------------------------------------------------------


DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize(
    ("ref", "parsed"),
    [
        (
            "canaryworkbook.azurecr.io/scoring:v1",
            ImageRef("canaryworkbook.azurecr.io", "scoring", "v1"),
        ),
        (
            "localhost:5000/team/scoring-api:2024.05_rc-1",
            ImageRef("localhost:5000", "team/scoring-api", "2024.05_rc-1"),
        ),
        ("scoring:v2", ImageRef("", "scoring", "v2")),
        ("team/scoring__x:latest", ImageRef("", "team/scoring__x", "latest")),
        # Model.package's location: by digest, in the workspace's registry (any cloud)
        (
            f"ws1a2b.azurecr.io/package@{DIGEST}",
            ImageRef("ws1a2b.azurecr.io", "package", "", DIGEST),
        ),
        (f"ws.azurecr.cn/scoring:v3@{DIGEST}", ImageRef("ws.azurecr.cn", "scoring", "v3", DIGEST)),
        ("ws.azurecr.us/a/b:v1", ImageRef("ws.azurecr.us", "a/b", "v1")),
        (f"localhost:5000/p@{DIGEST}", ImageRef("localhost:5000", "p", "", DIGEST)),
    ],
)
def test_image_refs_parse(ref: str, parsed: ImageRef) -> None:
    assert parse_image_ref(ref) == parsed
    assert str(parsed) == ref


@pytest.mark.parametrize(
    ("ref", "field"),
    [
        ("canaryworkbook.azurecr.io/Scoring:v1", "repository"),
        ("canaryworkbook.azurecr.io/scoring", "tag"),
        ("canaryworkbook.azurecr.io/scoring:", "tag"),
        ("canaryworkbook.azurecr.io/scoring:v1/x", "tag"),
        ("canaryworkbook.azurecr.io/scoring:" + "v" * 129, "tag"),
        ("canaryworkbook.azurecr.io/scoring:-v1", "tag"),
        ("canaryworkbook.azurecr.io/scoring:v 1", "tag"),
        ("canaryworkbook.azurecr.io/sco--ring_:v1", "repository"),
        ("bad_host.io/scoring:v1", "registry"),
        ("canaryworkbook.azurecr.io/scoring@sha256:abc", "digest"),
        ("canaryworkbook.azurecr.io/scoring@" + DIGEST.upper(), "digest"),
        ("canaryworkbook.azurecr.io/scoring:v1@", "digest"),
        ("canaryworkbook.azurecr.io/Scoring@" + DIGEST, "repository"),
        ("", "reference"),
    ],
)
def test_bad_image_refs_name_the_part(ref: str, field: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_image_ref(ref)
    assert e.value.field == field
    assert str(e.value).startswith("image")


# ---- image store --------------------------------------------------------------------------------


def test_chart_image_values_carry_registry_and_digest() -> None:
    ref = parse_image_ref(f"ws.azurecr.cn/package@{DIGEST}")
    assert ref.chart_image() == {
        "registry": "ws.azurecr.cn",
        "repository": "package",
        "tag": "",
        "digest": DIGEST,
    }


def test_local_store_keeps_images_by_tag_only(tmp_path: Path) -> None:
    store = LocalImageStore(tmp_path / "state")
    with pytest.raises(ConfigError) as e:
        store.resolve(f"canaryworkbook.azurecr.io/scoring@{DIGEST}")
    assert e.value.field == "digest"
    assert store.exists(f"canaryworkbook.azurecr.io/scoring:v1@{DIGEST}") is False


def test_put_resolve_list_exists(tmp_path: Path) -> None:
    store = LocalImageStore(tmp_path / "state")
    ref = "canaryworkbook.azurecr.io/scoring:v1"
    bundle = store.put(context(tmp_path / "ctx"), ref, META)
    assert bundle.ref == ref and bundle.model == "m:v1" and bundle.env == {"A": "1"}
    assert bundle.digest == tree_digest(tmp_path / "ctx")
    assert bundle.path.parent.parent.parent == tmp_path / "state" / "images"
    assert (bundle.path.parent / "image.json").is_file()
    assert bundle.entry_script_path == (bundle.path / "src" / "score.py").resolve()
    assert bundle.entry_script_path.read_text() == "print('hi')"
    assert bundle.model_dir_path.is_absolute()
    assert (bundle.model_dir_path / "m" / "v1" / "model.json").is_file()
    assert store.resolve(ref) == bundle
    assert store.exists(ref) and not store.exists("canaryworkbook.azurecr.io/scoring:v2")
    assert not store.exists("Not A Ref")
    assert store.list() == [bundle]


def test_same_registry_repository_in_other_registries_do_not_collide(tmp_path: Path) -> None:
    store = LocalImageStore(tmp_path)
    a = store.put(context(tmp_path / "a", "a"), "one.io/scoring:v1", META)
    b = store.put(context(tmp_path / "b", "b"), "two.io/scoring:v1", META)
    assert a.path != b.path
    assert [x.ref for x in store.list()] == ["one.io/scoring:v1", "two.io/scoring:v1"]


def test_put_same_content_is_a_no_op_and_new_content_moves_the_tag(tmp_path: Path) -> None:
    store = LocalImageStore(tmp_path / "state")
    ref = "example.io/scoring:v1"
    first = store.put(context(tmp_path / "ctx"), ref, META)
    assert store.put(context(tmp_path / "ctx"), ref, META).created == first.created
    moved = store.put(context(tmp_path / "ctx2", "print('v2')"), ref, META)
    assert moved.digest != first.digest
    assert store.resolve(ref).entry_script_path.read_text() == "print('v2')"
    assert len(store.list()) == 1
    assert not [p for p in (tmp_path / "state" / "images").rglob(".*")]


def test_list_sorts_tags_naturally(tmp_path: Path) -> None:
    store = LocalImageStore(tmp_path)
    for tag in ("v10", "v2", "v1"):
        store.put(context(tmp_path / tag), f"example.io/scoring:{tag}", META)
    assert [b.ref.rpartition(":")[2] for b in store.list()] == ["v1", "v2", "v10"]


def test_resolve_missing_names_the_ref_and_the_known_refs(tmp_path: Path) -> None:
    store = LocalImageStore(tmp_path)
    with pytest.raises(RegistryError, match=r"image example.io/scoring:v1 .*known: none"):
        store.resolve("example.io/scoring:v1")
    store.put(context(tmp_path / "ctx"), "example.io/scoring:v1", META)
    with pytest.raises(RegistryError) as e:
        store.resolve("example.io/scoring:v2")
    assert "image example.io/scoring:v2 is not in the local image store" in str(e.value)
    assert "known: example.io/scoring:v1" in str(e.value)
    with pytest.raises(ConfigError, match="image"):
        store.resolve("example.io/Scoring:v2")


@pytest.mark.parametrize(
    "meta",
    [
        {**META, "entry_script": "src/missing.py"},
        {**META, "entry_script": "/abs/score.py"},
        {**META, "model_dir": ""},
    ],
)
def test_put_rejects_paths_outside_the_context(tmp_path: Path, meta: dict) -> None:
    with pytest.raises(RegistryError, match="must be a path inside the build context"):
        LocalImageStore(tmp_path).put(context(tmp_path / "ctx"), "example.io/scoring:v1", meta)


def test_put_validates_the_ref(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tag"):
        LocalImageStore(tmp_path).put(context(tmp_path / "ctx"), "example.io/scoring", META)
