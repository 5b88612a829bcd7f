"""Bring your own backbone: a timm ``features_only`` model as the codec's front (:mod:`ssb.adapters.timm`).

timm's own tiny test model ``test_resnet`` (0.37 M parameters; stride-8 level ``layer2``: 48
channels) with random weights saved to a file stands for the user's backbone: ``ssb train --front
timm:test_resnet --front-weights PATH`` trains a tiny codec for it in a few iterations, ``ssb encode``
(in a fresh process: the checkpoint alone says how to build the front) and ``ssb info`` run with it,
and streams refuse codecs behind another front.  Nothing is downloaded: timm models are created with
``pretrained=False`` and the weights are the test's own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

timm = pytest.importorskip("timm")
torch = pytest.importorskip("torch")

from ssb.adapters import timm as ssb_timm  # noqa: E402
from ssb.backbones.features import FrontCard, feature_specs, front_card  # noqa: E402
from ssb.cli import main  # noqa: E402
from ssb.errors import MalformedFieldError, MissingDependencyError, ModelMismatchError, SSBError  # noqa: E402

MODEL = "test_resnet"
FRONT = f"timm:{MODEL}:2"  # the canonical name of timm:test_resnet (its stride-8 level)
#: a tiny recipe: 3 + 1 + 1 iterations, batches of 2, a 16-wide codec with 8 latent channels
TINY = ["--crops-per-photo", "1", "--warmup-iters", "3", "--distill-iters", "1", "--hard-iters", "1",
        "--batch-size", "2", "--warmup-batch", "2", "--hidden", "16", "--latent", "8", "--hyper", "4",
        "--threads", "1", "--no-progress"]


def _weights(path, seed: int, *, features_only: bool = False):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = timm.create_model(MODEL, pretrained=False, features_only=features_only)
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Random front weights (two seeds) and a folder of three real photos."""
    from PIL import Image

    from ssb.resources import real_photos

    root = tmp_path_factory.mktemp("timm_front")
    try:
        photos = real_photos()[:3]
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    (root / "images").mkdir()
    for name, img in photos:
        Image.fromarray(img).save(root / "images" / f"{name}.png")
    return {"root": root, "weights": _weights(root / "front.pth", 0), "other": _weights(root / "other.pth", 1),
            "images": root / "images", "photo": root / "images" / f"{photos[0][0]}.png"}


def _train(work, out, weights, capsys=None) -> str:
    rc = main(["train", "--front", f"timm:{MODEL}", "--front-weights", str(weights), "--images", str(work["images"]),
               "-o", str(out), *TINY])
    assert rc == 0
    return str(out / "feature_codec.pt")


@pytest.fixture(scope="module")
def trained(work):
    return _train(work, work["root"] / "run", work["weights"])


@pytest.fixture(scope="module")
def stream(work, trained):
    """``ssb encode`` in a fresh process with the trained codec (no detector: its head reads SSD features)."""
    out = work["root"] / "photo.ssb"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop(ssb_timm.WEIGHTS_ENV, None)
    run = subprocess.run([sys.executable, "-m", "ssb.cli", "encode", str(work["photo"]), "-o", str(out), "-q", "1",
                          "--weights", trained, "--no-index-objects"], env=env, capture_output=True, text=True,
                         timeout=300, check=False)
    assert run.returncode == 0, run.stderr
    assert "1 frame(s)" in run.stdout
    return out


# -- the card: timm's feature_info configures the codec and the heads ---------------------------------------
def test_card_comes_from_timm_feature_info(work):
    card, front = ssb_timm.timm_front(f"timm:{MODEL}", work["weights"])
    ref = timm.create_model(MODEL, pretrained=False, features_only=True).feature_info
    assert card.name == FRONT and front_card(card.id) is card
    (info,) = card.feature_info
    got = (info.name, info.channels, info.reduction, info.module)
    assert got == ("split", ref.channels()[2], ref.reduction()[2], ref.module_name()[2]) == ("split", 48, 8, "layer2")
    assert card.input_size == 160 and card.grid == (20, 20) and card.weights == front.fingerprint
    img = torch.randint(0, 256, (90, 130, 3), dtype=torch.uint8).numpy()
    assert tuple(front(front.preprocess([img])).shape) == (1, 48, 20, 20)
    assert FrontCard.from_dict(json.loads(json.dumps(card.to_dict()))) == card
    assert feature_specs(card.feature_info) == {"split": {"channels": 48, "stride": 8}}
    from ssb.codec.feature_codec import config_for

    assert config_for(card.feature_info).in_channels == 48
    deep, _ = ssb_timm.timm_front(f"timm:{MODEL}:-2", work["weights"], input_size=96, register=False)
    assert deep.name == f"timm:{MODEL}:3" and deep.feature_info[0].reduction == 16 and deep.grid == (6, 6)
    assert deep.id != card.id


def test_weights_in_any_layout_give_one_fingerprint(work, tmp_path):
    card, _ = ssb_timm.timm_front(FRONT, work["weights"], register=False)
    feats = _weights(tmp_path / "features.pth", 0, features_only=True)
    torch.save({"state_dict": torch.load(work["weights"], weights_only=True)}, tmp_path / "ckpt.pth")
    for path in (feats, tmp_path / "ckpt.pth"):
        assert ssb_timm.timm_front(FRONT, path, register=False)[0].weights == card.weights
    assert ssb_timm.timm_front(FRONT, work["other"], register=False)[0].weights != card.weights
    state = torch.load(work["weights"], weights_only=True)
    torch.save({k: v for k, v in state.items() if not k.startswith("layer2.")}, tmp_path / "cut.pth")
    with pytest.raises(ModelMismatchError, match="missing.*layer2"):
        ssb_timm.timm_front(FRONT, tmp_path / "cut.pth", register=False)
    torch.save({k: v for k, v in state.items() if not k.startswith(("layer3", "layer4", "fc"))}, tmp_path / "ok.pth")
    assert ssb_timm.timm_front(FRONT, tmp_path / "ok.pth", register=False)[0].weights == card.weights
    (tmp_path / "junk.pth").write_bytes(b"not a state dict")
    with pytest.raises(ModelMismatchError, match="cannot read front weights"):
        ssb_timm.timm_front(FRONT, tmp_path / "junk.pth", register=False)


@pytest.mark.parametrize("name, error, words", [
    ("timm:no_such_model_anywhere", ModelMismatchError, "timm has no model"),
    ("timm:hf-hub:someone/model", MalformedFieldError, "hub names are not accepted"),
    (f"timm:{MODEL}:9", MalformedFieldError, "feature levels 0..4"),
    (f"timm:{MODEL}:two", MalformedFieldError, "must be an integer"),
])
def test_bad_front_names_are_refused(work, name, error, words):
    with pytest.raises(error, match=words):
        ssb_timm.timm_front(name, work["weights"], register=False)


def test_without_timm_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(MissingDependencyError, match=r"ssb\[timm\]"):
        ssb_timm.resolve(f"timm:{MODEL}")


def test_train_needs_the_front_weights(tmp_path, capsys):
    assert main(["train", "--front", f"timm:{MODEL}", "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--front-weights" in err and "nothing is downloaded" in err
    assert main(["train", "--front-weights", str(tmp_path / "w.pth"), "-o", str(tmp_path)]) == 2
    assert "for a timm front" in capsys.readouterr().err
    helptext = subprocess.run([sys.executable, "-m", "ssb.cli", "train", "--help"], capture_output=True, text=True,
                              check=True).stdout
    assert "feature fidelity only" in " ".join(helptext.split())


# -- end to end: train, encode, info, decode ------------------------------------------------------------------
def test_checkpoint_records_the_front(trained):
    from ssb.codec import zoo

    ckpt = zoo.read("codec", trained)
    block = ckpt["ssb"]
    assert ckpt["identity"].id == f"omni-timm-{MODEL}-2@1"
    assert block["front"] == FRONT and "teacher" not in block
    card = FrontCard.from_dict(block["front_card"])
    assert card.weights == block["front_weights"] and card.feature_info[0].channels == 48
    assert ckpt["config"]["in_channels"] == 48 and ckpt["config"]["latent"] == 8
    log = ckpt["meta"]["train_log_tail"]
    assert [e["phase"] for e in log][-1] == "hard" and all("bpp160" in e and "cls" not in e for e in log)
    codec = zoo.load("codec", trained)
    assert codec.front_name == card.id and front_card(codec.front_name) == card


def test_stream_names_its_front_and_info_reads_it(stream, trained, capsys):
    import ssb
    from ssb.codec import zoo

    card = front_card(zoo.load("codec", trained).front_name)
    with ssb.open(stream) as bs:
        meta = bs.header.metadata
    assert meta["model"] == f"omni-timm-{MODEL}-2@1"
    assert (meta["front"], meta["front_weights"]) == (FRONT, card.weights)
    assert main(["info", str(stream)]) == 0
    assert "codec 'ssb.image', 1 frames" in capsys.readouterr().out
    assert main(["info", str(stream), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["header"]["metadata"]["front"] == FRONT


class _Probe:
    """A head whose inputs derive from the front's FeatureInfo (what a head trained behind it declares)."""

    def __init__(self, infos):
        self.required_features = feature_specs(infos)

    def __call__(self, features, image_sizes=None, **_):
        return [{"shape": tuple(features["split"].shape), "mean": float(features["split"].float().mean())}]


def test_heads_get_the_fronts_features(stream, trained, work):
    from ssb.codec import zoo
    from ssb.pipeline import Models, analyze

    codec = zoo.load("codec", trained)
    card = front_card(codec.front_name)
    res = analyze(stream, tasks=["probe"], models=Models(trained, heads={"probe": _Probe(card.feature_info)}))
    (frame,) = res.frames
    assert frame.predictions["probe"]["shape"] == (1, 48, 20, 20)
    with pytest.raises(ModelMismatchError, match="needs 'split' with 32 channels at stride 8; the stream's are 48"):
        analyze(stream, tasks=["detection"], models=Models(trained, heads={"detection": _Ssd()}))


class _Ssd:
    required_features = {"split": {"channels": 32, "stride": 8}}

    def __call__(self, *a, **k):  # pragma: no cover - refused before it runs
        raise AssertionError


def test_a_stream_refuses_a_codec_behind_another_front(stream, trained, work, tmp_path):
    from ssb.codec import zoo
    from ssb.pipeline import Models, analyze

    probe = {"probe": _Probe(front_card(zoo.load("codec", trained).front_name).feature_info)}
    with pytest.raises(ModelMismatchError) as exc:  # the shipped codec: another model, another front
        analyze(stream, tasks=["probe"], models=Models(heads=probe))
    assert f"needs front {FRONT} (weights {_fingerprint(work['weights'])})" in str(exc.value)
    assert "codes front ssd-mbv2.s8" in str(exc.value)
    other = _train(work, tmp_path / "other", work["other"])  # same model id, other front weights
    with pytest.raises(SSBError) as exc:
        analyze(stream, tasks=["probe"], models=Models(other, heads=probe))
    msg = str(exc.value)
    assert f"needs front {FRONT} (weights {_fingerprint(work['weights'])})" in msg
    assert f"(weights {_fingerprint(work['other'])})" in msg and "sequence_header.metadata.front" in msg


def _fingerprint(path) -> str:
    return ssb_timm.timm_front(FRONT, path, register=False)[0].weights


def test_encoding_checks_the_front_weights(stream, trained, work, tmp_path, monkeypatch):
    import shutil

    from ssb.pipeline import encode

    torch.set_num_threads(1)  # as the encoding process of the `stream` fixture
    moved = shutil.copy(work["weights"], tmp_path / "moved.pth")
    monkeypatch.setenv(ssb_timm.WEIGHTS_ENV, str(moved))
    out = tmp_path / "again.ssb"
    encode(work["photo"], out, weights=trained, quality=1, index_objects=False)
    assert out.read_bytes() == stream.read_bytes()  # the same front, the same features, the same bits
    monkeypatch.setenv(ssb_timm.WEIGHTS_ENV, str(work["other"]))
    want = _fingerprint(work["weights"])
    with pytest.raises(ModelMismatchError, match=f"trained behind {FRONT} with weights {want}"):
        encode(work["photo"], tmp_path / "no.ssb", weights=trained, index_objects=False)
    monkeypatch.setenv(ssb_timm.WEIGHTS_ENV, str(tmp_path / "gone.pth"))
    with pytest.raises(ModelMismatchError, match="no weights for front"):
        encode(work["photo"], tmp_path / "no.ssb", weights=trained, index_objects=False)


def test_the_index_detector_is_refused_with_what_to_do(trained, work, tmp_path):
    from ssb.pipeline import Models, encode

    models = Models(trained)
    weight = torch.zeros(1, 32, 1, 1)  # a detector of the teacher's 32-channel features
    models.detector = lambda: (lambda split, sizes: [torch.nn.functional.conv2d(split, weight)])
    with pytest.raises(ModelMismatchError, match="--no-index-objects"):
        encode(work["photo"], tmp_path / "no.ssb", models=models)


DECODE_WITHOUT_TIMM = """
import sys
sys.modules["timm"] = None  # import timm -> ImportError
import ssb
from ssb.codec import registry
from ssb.pipeline import Models
with ssb.open(sys.argv[1]) as bs:
    dec = registry.decoder(bs, Models(sys.argv[2]).zoo)
    (info,) = dec.feature_info
    frame = dec.decode(next(iter(dec.plan())))
print(info.channels, info.reduction, tuple(frame.features["split"].shape))
"""


def test_decoding_needs_neither_timm_nor_the_front(stream, trained, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", ssb_timm.WEIGHTS_ENV: str(tmp_path / "absent.pth")}
    run = subprocess.run([sys.executable, "-c", DECODE_WITHOUT_TIMM, str(stream), trained], env=env,
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["48", "8", "(1,", "48,", "20,", "20)"]
