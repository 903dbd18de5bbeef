"""`ski-lvlm data ntu` and `ski-lvlm data zsl` end to end on small real-format files."""

from __future__ import annotations

import numpy as np
import pytest

from data_tools.ntu import main, zsl_main
from ski_lvlm.data.ntu import read_manifest
from ski_lvlm.data.skeleton import write_ntu_skeleton

NAMES = ["S001C001P001R001A001", "S001C002P001R001A002", "S001C003P003R001A001", "S002C001P004R002A060",
         "S018C001P045R001A061", "S019C002P048R001A120"]
MISSING = "S001C002P005R002A008"  # on the packaged NTU60 missing-skeleton list


def _skeletons(folder):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for i, n in enumerate(NAMES + [MISSING]):
        x = rng.normal(size=(3, 5 + i, 25, 2)).astype(np.float32)
        write_ntu_skeleton(folder / "sub" / f"{n}.skeleton", x)
    (folder / "README.txt").write_text("not a skeleton")


@pytest.mark.slow
def test_ntu_cli_converts_and_skips_missing(tmp_path, capsys):
    sk = tmp_path / "nturgb+d_skeletons"
    _skeletons(sk)
    out = tmp_path / "NTU_CS.npz"
    rc = main(["--skeletons", str(sk), "--out", str(out), "--benchmark", "xsub", "--workers", "2",
               "--chunk-size", "2", "--frames", "32", "--sampling", "uniform", "--center-spine", "--align-view"])
    assert rc == 0
    msg = capsys.readouterr()
    assert "files/s" in msg.out and "skipped 1 listed as missing" in msg.err
    z = np.load(out)
    assert set(z.files) == {"x_train", "y_train", "x_test", "y_test", "files_train", "files_test"}
    assert sorted(z["files_train"]) == ["S001C001P001R001A001", "S001C002P001R001A002", "S002C001P004R002A060",
                                        "S018C001P045R001A061"]
    assert sorted(z["files_test"]) == ["S001C003P003R001A001", "S019C002P048R001A120"]
    assert z["x_train"].shape == (4, 3, 32, 25, 2) and z["x_train"].dtype == np.float32
    assert z["y_train"].dtype == np.int64 and sorted(z["y_test"].tolist()) == [0, 119]

    # xview, NTU60 only, default pad300 without normalisation
    out2 = tmp_path / "NTU60_CV.npz"
    assert main(["--skeletons", str(sk), "--out", str(out2), "--benchmark", "xview", "--only", "ntu60",
                 "--workers", "1"]) == 0
    z2 = np.load(out2)
    assert list(z2["files_test"]) == ["S001C001P001R001A001", "S002C001P004R002A060"]
    assert z2["x_train"].shape[2] == 300 and not z2["x_train"][:, :, 20:].any()  # zero padding


def test_ntu_cli_bad_file_message_and_skip_bad(tmp_path, capsys):
    sk = tmp_path / "sk"
    _skeletons(sk)
    bad = sk / "S003C001P001R001A005.skeleton"
    lines = (sk / "sub" / f"{NAMES[0]}.skeleton").read_text().splitlines()
    lines[3] = "26"  # wrong joint count on line 4
    bad.write_text("\n".join(lines) + "\n")
    out = tmp_path / "a.npz"
    assert main(["--skeletons", str(sk), "--out", str(out), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:4: joint count is 26" in err and "--skip-bad" in err and not out.exists()
    assert main(["--skeletons", str(sk), "--out", str(out), "--workers", "2", "--skip-bad"]) == 0
    report = (tmp_path / "a.npz.bad.txt").read_text()
    assert report.startswith(f"{bad}\t") and ":4:" in report
    z = np.load(out)
    assert len(z["files_train"]) + len(z["files_test"]) == len(NAMES)


def test_ntu_cli_user_errors(tmp_path, capsys):
    assert main(["--skeletons", str(tmp_path / "nope"), "--out", str(tmp_path / "a.npz")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["--skeletons", str(tmp_path / "empty"), "--out", str(tmp_path / "a.npz")]) == 2
    assert "no .skeleton files" in capsys.readouterr().err


def test_zsl_cli(tmp_path, capsys):
    vids, sk = tmp_path / "rgb", tmp_path / "sk"
    vids.mkdir()
    _skeletons(sk)
    for n in NAMES + [MISSING]:
        (vids / f"{n}_rgb.avi").write_bytes(b"")
    out = tmp_path / "zsl_110-10"
    # 110-10 (NTU120): novel classes include A005 drop, ...; A001/A002/A060/A061/A120 are base classes
    assert zsl_main(["--split", "110-10", "--videos", str(vids), "--skeletons", str(sk), "--out", str(out)]) == 2
    assert "empty manifest" in capsys.readouterr().err  # no novel-class sample in this folder
    (vids / "S001C001P001R001A005_rgb.avi").write_bytes(b"")  # drop -> novel id 0
    write_ntu_skeleton(sk / "S001C001P001R001A005.skeleton", np.ones((3, 2, 25, 1), np.float32))
    assert zsl_main(["--split", "110-10", "--videos", str(vids), "--skeletons", str(sk), "--out", str(out)]) == 0
    train = read_manifest(out / "zsl_base_train.csv")
    val = read_manifest(out / "zsl_base_val.csv")
    novel = read_manifest(out / "zsl_novel_test.csv")
    assert len(train) == 4 and len(val) == 2 and [r.label for r in novel] == [0]
    assert all(r.video_path.exists() and r.skeleton_path.exists() for r in train + val + novel)
    assert (out / "zsl_novel_classes.csv").read_text().splitlines()[1] == "0,drop"
    assert "base_train 4, base_val 2, novel_test 1" in capsys.readouterr().out
