"""The paper's released k-means (``km500-base-l11.joblib``: a MiniBatchKMeans pickled by joblib under
numpy >= 2.1 and scikit-learn 1.5.2) read here, under numpy 1.26 and a newer scikit-learn.

What happens without a dedicated reader (measured): ``joblib.load`` runs sklearn's ``__setstate__``
(InconsistentVersionWarning: "Trying to unpickle estimator MiniBatchKMeans from version 1.5.2");
numpy 1.26 ships ``numpy._core.multiarray`` stubs, so numpy 2's scalars and plain-pickled arrays load,
but not ``numpy._core.numeric._frombuffer`` (protocol-5 pickles: ModuleNotFoundError) nor a numpy-2
RandomState ("<class 'numpy.random._mt19937.MT19937'> is not a known BitGenerator module").
``load_centroids`` reads ``cluster_centers_`` with a restricted unpickler instead.

How the numpy-2 files are made here (tests/released_support.py): a pickler that writes numpy's globals under numpy 2's module
names (``numpy._core.multiarray``, ``numpy._core.numeric``): everything else in the stream is what
numpy 1.26 and numpy 2 both write. ``test_rewriting_pickler_writes_what_numpy2_writes`` pins that
byte for byte against pickles written by numpy 2.1.3, and ``test_a_real_numpy2_file`` against a
MiniBatchKMeans file written by numpy 2.1.3 + scikit-learn 1.5.2 + joblib 1.4.2 (made once in a
throwaway venv with the fairseq recipe's arguments, embedded below).
"""

from __future__ import annotations

import base64
import os
import pickle
import pickletools
import warnings
import zlib
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.cluster import MiniBatchKMeans
from sklearn.decomposition import PCA
from sklearn.exceptions import InconsistentVersionWarning

from spokenlm_plugin.cli import main
from spokenlm_plugin.core.km import read_km_arrays
from spokenlm_plugin.units.kmeans import load_centroids
from tests.conftest import fails_in_one_line
from tests.released_support import dump_as_released, fairseq_kmeans, numpy2_pickle

#: Written by numpy 2.1.3 (``pickle.dumps``): np.float64(1.5) at protocol 4, np.arange(3, dtype=float32)
#: at protocols 4 and 5. numpy 2 names its builders numpy._core.multiarray.{scalar,_reconstruct} and
#: numpy._core.numeric._frombuffer (protocol 5); numpy 1.26 writes numpy.core.* for the same objects.
NUMPY2_PICKLES = {
    "scalar, protocol 4": (
        b"\x80\x04\x95j\x00\x00\x00\x00\x00\x00\x00\x8c\x16numpy._core.multiarray\x94\x8c\x06scalar\x94\x93\x94"
        b"\x8c\x05numpy\x94\x8c\x05dtype\x94\x93\x94\x8c\x02f8\x94\x89\x88\x87\x94R\x94(K\x03\x8c\x01<\x94NNNJ"
        b"\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t\x94bC\x08\x00\x00\x00\x00\x00\x00\xf8?\x94\x86\x94R\x94."),
    "array, protocol 4": (
        b"\x80\x04\x95\x95\x00\x00\x00\x00\x00\x00\x00\x8c\x16numpy._core.multiarray\x94\x8c\x0c_reconstruct"
        b"\x94\x93\x94\x8c\x05numpy\x94\x8c\x07ndarray\x94\x93\x94K\x00\x85\x94C\x01b\x94\x87\x94R\x94(K\x01K"
        b"\x03\x85\x94h\x03\x8c\x05dtype\x94\x93\x94\x8c\x02f4\x94\x89\x88\x87\x94R\x94(K\x03\x8c\x01<\x94NNNJ"
        b"\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t\x94b\x89C\x0c\x00\x00\x00\x00\x00\x00\x80?\x00\x00\x00@\x94t"
        b"\x94b."),
    "array, protocol 5": (
        b"\x80\x05\x95\x80\x00\x00\x00\x00\x00\x00\x00\x8c\x13numpy._core.numeric\x94\x8c\x0b_frombuffer\x94"
        b"\x93\x94(\x96\x0c\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80?\x00\x00\x00@\x94\x8c\x05"
        b"numpy\x94\x8c\x05dtype\x94\x93\x94\x8c\x02f4\x94\x89\x88\x87\x94R\x94(K\x03\x8c\x01<\x94NNNJ\xff\xff"
        b"\xff\xffJ\xff\xff\xff\xffK\x00t\x94bK\x03\x85\x94\x8c\x01C\x94t\x94R\x94."),
}

#: joblib.dump of MiniBatchKMeans(n_clusters=5, init="k-means++", max_iter=100, batch_size=64,
#: compute_labels=False, tol=0.0, max_no_improvement=100, init_size=None, n_init=3,
#: reassignment_ratio=0.0).fit(np.random.default_rng(0).normal(size=(300, 4)).astype(np.float32))
#: under numpy 2.1.3, scikit-learn 1.5.2, joblib 1.4.2 (952 bytes; zlib + base64 here).
REAL_NUMPY2_JOBLIB = (
    "eNptU89rE0EU3qaJSWPpL6GCBX8UlUppbEUPim2iDRRcG8WD9qAMs5ups3Z3dtmZbY2ithRtC3NzipbiHyDoyYNobdMePOpRFAqK"
    "4EEPHjwJIvXtJrEVfIflzez73vve9+ZNxud7Ylpkcicfswn2Wca0Ay6In0FjDsGMK9k8bDHrNBYm1Yejm/vq0JS6pbpkmqFqNFd6"
    "QsYhTijZMNYTIbu7lUw5+DqyIEDpRVkvXFsNaVWT2xiKAHq9TI4T33A5UbomG33Miq6DuMCCqIJsC1MwF1mO57vjxCFMhMnSRsgI"
    "cesGoHKyyXQdLxAE2dggNldzsiFMXvkPSXyCObeushCOfCwsdwuTJoZGCRaBTzhQQkqPyzgKyQKdJNqkuR39WzSNNmvoq3BkSFCo"
    "VAQ5YoA03YAJUHDHNdewLSPDAscrIc8yQWolWwvh8ZTv49IlH3seiPRX2RQPDNMGykomIpSSSVbEYSwEyQSn2IOaibvgu34RoLJu"
    "EPyiKME93VPzIDY2elTNzc6oC6oLWqg7qQqFwpkNsOija0IZMo1t251AjoM9NSs7KjyjagjbNdWMkiDQWEtgJDcqpk2u57Xczby2"
    "uprXtNfg783PL9ZUbURkAoNCxBcWVkM5beLb+q7Wy7Jl6z1yLKaGsr8XpnMhpvk/k24HWbnFzHC2HIZXnWQ4nJbq80MmxMIrRIp2"
    "VBSku+k+2qkn9Pg9RffTA/Qg7aaZWXp4K/9FmSob+Fz2Ivs58HDpwwAtfl35hLP9zwafl989SZXX3k9l2duRlcHbjwZ+xF6svHzc"
    "Wb7y8U7516u25TdfPi8vPejN9vYt9C80nC+fWHuanUe13qGPzSflBiJcjxS0IYgHJPVRmGa0FuC3y1RNCxBp+uzM8e9yBESq7iOC"
    "1eCWy2C4fZljmSMqMDJ/APNUe9w="
)


def brute_force_units(x: np.ndarray, centroids: np.ndarray) -> list[int]:
    return ((x.astype(np.float64)[:, None, :] - centroids.astype(np.float64)[None]) ** 2).sum(-1).argmin(1).tolist()


def pickle_globals(data: bytes) -> list[tuple[str, str]]:
    """(module, name) of every STACK_GLOBAL in a plain pickle, from its opcodes."""
    strings: list[str] = []
    found = []
    for op, arg, _ in pickletools.genops(data):
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE"):
            strings.append(str(arg))
        elif op.name == "STACK_GLOBAL":
            found.append((strings[-2], strings[-1]))
    return found


def _quietly(fn: Any, *args: Any) -> Any:
    """Call ``fn`` with every warning turned into an error (the reader must not run sklearn's setstate)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn(*args)


# ---------------------------------------------------------------------------------------------------


def test_rewriting_pickler_writes_what_numpy2_writes() -> None:
    objects = {"scalar, protocol 4": (np.float64(1.5), 4), "array, protocol 4": (np.arange(3, dtype=np.float32), 4),
               "array, protocol 5": (np.arange(3, dtype=np.float32), 5)}
    for what, (obj, protocol) in objects.items():
        ours = numpy2_pickle(obj, protocol=protocol)
        assert ours == NUMPY2_PICKLES[what], what
        assert pickle.dumps(obj, protocol=protocol) != ours  # numpy 1.26 itself writes numpy.core.*
        assert pickle_globals(ours)[0][0] in ("numpy._core.multiarray", "numpy._core.numeric")
    # numpy 1.26 has numpy._core.multiarray stubs but no numpy._core.numeric:
    assert pickle.loads(NUMPY2_PICKLES["array, protocol 4"]).tolist() == [0, 1, 2]
    with pytest.raises(ModuleNotFoundError, match="numpy._core.numeric"):
        pickle.loads(NUMPY2_PICKLES["array, protocol 5"])


def test_a_real_numpy2_file(tmp_path: Path) -> None:
    """The numpy 2.1.3 / scikit-learn 1.5.2 file: read without sklearn, and re-made here byte for byte."""
    real = tmp_path / "km5.joblib"
    real.write_bytes(zlib.decompress(base64.b64decode(REAL_NUMPY2_JOBLIB)))
    with pytest.warns(InconsistentVersionWarning, match="from version 1.5.2"):
        model = joblib.load(real)  # what joblib does: sklearn's setstate, version warning
    centroids = _quietly(load_centroids, real)
    np.testing.assert_array_equal(centroids, model.cluster_centers_)
    x = np.random.default_rng(0).normal(size=(300, 4)).astype(np.float32)  # its training data
    assert brute_force_units(x, centroids) == model.predict(x).tolist()
    # The rewriting pickler, given the same model state, writes exactly the file numpy 2 wrote.
    assert dump_as_released(model, tmp_path / "again.joblib").read_bytes() == real.read_bytes()


def test_kmeans_assign_reads_a_numpy2_sklearn15_joblib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    x = (rng.normal(size=(600, 16)) + 4 * rng.normal(size=(8, 16))[rng.integers(0, 8, 600)]).astype(np.float32)
    model = fairseq_kmeans(x, 8)
    path = dump_as_released(model, tmp_path / "km8-l11.joblib")
    with pytest.warns(InconsistentVersionWarning, match="from version 1.5.2"):
        joblib.load(path)
    assert _quietly(load_centroids, path).tolist() == model.cluster_centers_.tolist()

    feats = tmp_path / "feats"
    feats.mkdir()
    lengths = [100, 250, 250]
    np.save(feats / "train_0_1.npy", x)
    (feats / "train_0_1.len").write_text("".join(f"{n}\n" for n in lengths))
    out = tmp_path / "train.km"
    assert _quietly(main, ["kmeans", "assign", "--features", str(feats), "--split", "train",
                           "--centroids", str(path), "--out", str(out)]) == 0
    units = read_km_arrays(out)
    assert [len(u) for u in units] == lengths
    assert np.concatenate(units).tolist() == brute_force_units(x, model.cluster_centers_)

    # A plain protocol-5 pickle (pickle.dump(model, f, protocol=5) under numpy 2): arrays via
    # numpy._core.numeric._frombuffer, which numpy 1.26 lacks.
    with monkeypatch.context() as m:
        m.setattr("sklearn.base.__version__", "1.5.2")
        data = numpy2_pickle(model, protocol=5)
    assert ("numpy._core.numeric", "_frombuffer") in pickle_globals(data)
    assert ("sklearn.cluster._kmeans", "MiniBatchKMeans") in pickle_globals(data)
    (tmp_path / "km8.pkl").write_bytes(data)
    with pytest.raises(ModuleNotFoundError, match="numpy._core.numeric"):
        pickle.loads(data)
    assert _quietly(load_centroids, tmp_path / "km8.pkl").tolist() == model.cluster_centers_.tolist()


def test_speech_encoder_reads_a_numpy2_kmeans(tmp_path: Path) -> None:
    from spokenlm_plugin.units.encoder import DenseModel, SpeechEncoder

    from tests.units_support import make_hubert_checkpoint

    ckpt = make_hubert_checkpoint(tmp_path / "base.pt")
    wav = (0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)
    feats = DenseModel.from_checkpoint(ckpt, layer=2, device="cpu")(wav).numpy()
    model = fairseq_kmeans(feats, 6)
    path = dump_as_released(model, tmp_path / "km6.joblib")
    encoder = SpeechEncoder.from_files(ckpt, path, layer=2, device="cpu")
    assert encoder(wav)["units"].tolist() == brute_force_units(feats, model.cluster_centers_)


class _Mkdir:
    """Unpickling this calls os.mkdir(path): a stand-in for code a hostile pickle would run."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.mkdir, (self.path,)


def test_the_reader_runs_no_other_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x = np.random.default_rng(0).normal(size=(200, 4)).astype(np.float32)
    model = fairseq_kmeans(x, 3)
    model.callback_ = _Mkdir(tmp_path / "ran")  # an attribute the centroids do not need
    path = dump_as_released(model, tmp_path / "km3.joblib")
    assert load_centroids(path).tolist() == model.cluster_centers_.tolist()
    assert not (tmp_path / "ran").exists()
    joblib.dump(_Mkdir(tmp_path / "ran"), tmp_path / "hostile.joblib")
    err = fails_in_one_line(["kmeans", "assign", "--features", str(tmp_path), "--centroids",
                             str(tmp_path / "hostile.joblib"), "--out", str(tmp_path / "x.km")], capsys)
    assert "holds posix.mkdir, not a fitted k-means model" in err
    assert not (tmp_path / "ran").exists()


def test_other_files_fail_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x = np.random.default_rng(0).normal(size=(200, 4)).astype(np.float32)
    feats = tmp_path / "feats"
    feats.mkdir()
    np.save(feats / "a.npy", x)
    (feats / "a.len").write_text("200\n")

    def assign(path: Path, *needles: str) -> None:
        fails_in_one_line(["kmeans", "assign", "--features", str(feats / "a.npy"), "--centroids", str(path),
                           "--out", str(tmp_path / "a.km")], capsys, str(path), *needles)

    joblib.dump({"centroids": x[:3]}, tmp_path / "dict.joblib")
    assign(tmp_path / "dict.joblib", "holds a dict, not a fitted k-means model")
    joblib.dump(PCA(2).fit(x), tmp_path / "pca.joblib")
    assign(tmp_path / "pca.joblib", "holds sklearn.decomposition._pca.PCA, not a fitted k-means model")
    joblib.dump(MiniBatchKMeans(3), tmp_path / "unfitted.joblib")
    assign(tmp_path / "unfitted.joblib", "MiniBatchKMeans is not a fitted k-means model (no cluster_centers_)")
    (tmp_path / "text.joblib").write_text("cluster centres, one per line\n")
    assign(tmp_path / "text.joblib", "not a readable k-means pickle", "convert it where it loads: python -c")
    full = (tmp_path / "km.joblib")
    joblib.dump(fairseq_kmeans(x, 3), full)
    (tmp_path / "cut.joblib").write_bytes(full.read_bytes()[:-20])  # the centroids' bytes cut short
    assign(tmp_path / "cut.joblib", "not a readable k-means pickle", "numpy.save(")
    (tmp_path / "old.joblib").write_bytes(b"ZF0x00000000000000000000")
    assign(tmp_path / "old.joblib", "joblib < 0.10", "convert it where it loads")
    assert not (tmp_path / "a.km").exists()


def test_compressed_dumps_and_every_pickle_protocol(tmp_path: Path) -> None:
    model = fairseq_kmeans(np.random.default_rng(0).normal(size=(200, 4)).astype(np.float32), 3)
    for compress in ["zlib", "gzip", "bz2", "xz", "lzma"]:
        joblib.dump(model, tmp_path / f"{compress}.joblib", compress=(compress, 3))
        assert _quietly(load_centroids, tmp_path / f"{compress}.joblib").tolist() == model.cluster_centers_.tolist()
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):  # 0-2: Python 2 module names, bytes via _codecs
        joblib.dump(model, tmp_path / f"p{protocol}.joblib", protocol=protocol)
        (tmp_path / f"p{protocol}.pkl").write_bytes(pickle.dumps(model, protocol=protocol))
        for path in (tmp_path / f"p{protocol}.joblib", tmp_path / f"p{protocol}.pkl"):
            assert _quietly(load_centroids, path).tolist() == model.cluster_centers_.tolist(), path
