"""NTU .skeleton reader/writer on files written in the real text format."""

from __future__ import annotations

import numpy as np
import pytest

from ski_lvlm.data.skeleton import (
    NTU_BONES,
    NTU_JOINT_NAMES,
    SPINE_MID,
    SkeletonFormatError,
    body_motion,
    read_ntu_skeleton,
    write_ntu_skeleton,
)


def _joint_line(x: float, y: float, z: float, t: int = 0) -> str:
    # x y z depthX depthY colorX colorY orientW orientX orientY orientZ trackingState (as Kinect writes them)
    return f"{x} {y} {z} {100 + t} {200 + t} {1000.5 + t} {500.25 + t} 0.1 0.2 0.3 0.4 2"


def _raw_file(frames: list[list[tuple[str, float]]]) -> str:
    """frames[t] = [(bodyID, amplitude), ...]; joint j of a body at frame t = amp * (t+1) * (j, 2j, 3j) / 10."""
    out = [str(len(frames))]
    for t, bodies in enumerate(frames):
        out.append(str(len(bodies)))
        for bid, amp in bodies:
            out.append(f"{bid} 0 1 1 1 1 0 0.02 0.05 2")
            out.append("25")
            for j in range(25):
                s = amp * (t + 1) / 10
                out.append(_joint_line(s * j, 2 * s * j, 3 + s * j, t))
    return "\n".join(out) + "\n"


def _expected_joint(t: int, j: int, amp: float) -> np.ndarray:
    s = amp * (t + 1) / 10
    return np.array([s * j, 2 * s * j, 3 + s * j], np.float32)


def test_constants():
    assert len(NTU_JOINT_NAMES) == 25 and NTU_JOINT_NAMES[SPINE_MID] == "spine_mid"
    assert len(NTU_BONES) == 24
    # a tree: every joint except the root is a child exactly once, all indices 0-based
    children = sorted(c for c, _ in NTU_BONES)
    assert children == list(range(1, 25))
    assert all(0 <= p < 25 for _, p in NTU_BONES)


def test_one_body_real_format(tmp_path):
    p = tmp_path / "S001C001P001R001A001.skeleton"
    p.write_text(_raw_file([[("72057594037931101", 1.0)] for _ in range(4)]))
    x = read_ntu_skeleton(p)
    assert x.shape == (3, 4, 25, 2) and x.dtype == np.float32
    np.testing.assert_array_equal(x[:, 2, 7, 0], _expected_joint(2, 7, 1.0))
    assert not x[..., 1].any()  # second slot empty


def test_three_bodies_keeps_two_with_most_motion(tmp_path):
    # body A still, body B moves a lot, body C moves a little: keep B then C
    frames = [[("A", 0.0), ("B", 5.0), ("C", 1.0)] for _ in range(5)]
    p = tmp_path / "three.skeleton"
    p.write_text(_raw_file(frames))
    sk = read_ntu_skeleton(p, with_2d=True)
    assert sk.body_ids == ["B", "C"] and sk.num_bodies_in_file == 3
    np.testing.assert_array_equal(sk.xyz[:, 3, 10, 0], _expected_joint(3, 10, 5.0))
    np.testing.assert_array_equal(sk.xyz[:, 3, 10, 1], _expected_joint(3, 10, 1.0))
    # 2D coordinates: depth = (100+t, 200+t), colour = (1000.5+t, 500.25+t)
    np.testing.assert_array_equal(sk.depth_xy[:, 3, 0, 0], [103, 203])
    np.testing.assert_array_equal(sk.color_xy[:, 3, 0, 1], [1003.5, 503.25])
    # file order instead of motion order
    xf = read_ntu_skeleton(p, max_bodies=3, order="file")
    np.testing.assert_array_equal(xf[:, 3, 10, 0], _expected_joint(3, 10, 0.0))


def test_two_bodies_zero_body_frame_and_partial_presence(tmp_path):
    # frame 1 has no body; body "B" appears only from frame 2 on
    frames = [[("A", 1.0)], [], [("A", 1.0), ("B", 3.0)], [("B", 3.0), ("A", 1.0)]]
    p = tmp_path / "two.skeleton"
    p.write_text(_raw_file(frames))
    x = read_ntu_skeleton(p)
    assert x.shape[1] == 4  # T = frames in the file, the empty frame is kept
    assert not x[:, 1].any()
    # B has more motion -> slot 0; it is absent (zeros) in frames 0 and 1
    assert not x[:, 0, :, 0].any()
    np.testing.assert_array_equal(x[:, 3, 4, 0], _expected_joint(3, 4, 3.0))
    np.testing.assert_array_equal(x[:, 3, 4, 1], _expected_joint(3, 4, 1.0))
    np.testing.assert_array_equal(x[:, 0, 4, 1], _expected_joint(0, 4, 1.0))


def test_crlf_equals_lf(tmp_path):
    text = _raw_file([[("A", 1.0), ("B", 2.0)] for _ in range(3)])
    a, b = tmp_path / "lf.skeleton", tmp_path / "crlf.skeleton"
    a.write_bytes(text.encode())
    b.write_bytes(text.replace("\n", "\r\n").encode())
    assert b"\r\n" in b.read_bytes()
    np.testing.assert_array_equal(read_ntu_skeleton(a), read_ntu_skeleton(b))


def test_truncated_file_names_file_and_line(tmp_path):
    lines = _raw_file([[("A", 1.0)] for _ in range(3)]).splitlines()
    p = tmp_path / "cut.skeleton"
    p.write_text("\n".join(lines[:40]) + "\n")  # frame 2 stops after 11 of 25 joints
    with pytest.raises(SkeletonFormatError) as ei:
        read_ntu_skeleton(p)
    assert ei.value.path == str(p) and ei.value.line == 41
    assert str(p) in str(ei.value) and ":41:" in str(ei.value) and "ends early" in str(ei.value)
    # cut in the middle of a joint line
    p.write_text("\n".join(lines[:10]) + "\n" + lines[10][:15] + "\n")
    with pytest.raises(SkeletonFormatError, match=r":11: joint line has \d+ fields"):
        read_ntu_skeleton(p)


def test_wrong_joint_count_and_non_numeric(tmp_path):
    lines = _raw_file([[("A", 1.0)] for _ in range(2)]).splitlines()
    bad = list(lines)
    bad[3] = "24"  # joint count of frame 1 (line 4)
    p = tmp_path / "bad.skeleton"
    p.write_text("\n".join(bad) + "\n")
    with pytest.raises(SkeletonFormatError, match=r"bad\.skeleton:4: joint count is 24, expected 25"):
        read_ntu_skeleton(p)
    bad = list(lines)
    bad[9] = bad[9].replace("0.1 0.2", "0.1 abc", 1)  # line 10
    p.write_text("\n".join(bad) + "\n")
    with pytest.raises(SkeletonFormatError, match=r":10: non-numeric joint value 'abc'"):
        read_ntu_skeleton(p)
    p.write_text("many\n")
    with pytest.raises(SkeletonFormatError, match=r":1: expected the frame count"):
        read_ntu_skeleton(p)


def test_round_trip_exact_with_2d(tmp_path):
    rng = np.random.default_rng(0)
    t_len = 12
    xyz = rng.normal(size=(3, t_len, 25, 2)).astype(np.float32)
    xyz[..., 0] *= 4.0  # body 0 has the most motion, so motion order == file order
    xyz[:, 5] = 0.0  # nobody in frame 5
    xyz[:, 8:, :, 1] = 0.0  # body 1 leaves
    color = (rng.random((2, t_len, 25, 2)) * 1920).astype(np.float32)
    depth = (rng.random((2, t_len, 25, 2)) * 512).astype(np.float32)
    absent = ~np.any(xyz != 0, axis=(0, 2))  # [T, M]
    color *= ~absent[None, :, None, :]
    depth *= ~absent[None, :, None, :]
    p = tmp_path / "rt.skeleton"
    write_ntu_skeleton(p, xyz, color_xy=color, depth_xy=depth, body_ids=[11, 22])
    raw = p.read_bytes()
    assert b"\r" not in raw and raw.splitlines()[0] == str(t_len).encode()
    sk = read_ntu_skeleton(p, with_2d=True)
    np.testing.assert_array_equal(sk.xyz, xyz)
    np.testing.assert_array_equal(sk.color_xy, color)
    np.testing.assert_array_equal(sk.depth_xy, depth)
    assert sk.body_ids == ["11", "22"]
    # more slots than bodies: extra slots are zero
    x3 = read_ntu_skeleton(p, max_bodies=3)
    np.testing.assert_array_equal(x3[..., :2], xyz)
    assert not x3[..., 2].any()


def test_body_motion_matches_definition():
    j = np.arange(30, dtype=np.float64).reshape(10, 3)
    assert body_motion(j) == pytest.approx(float(np.var(j[:, 0]) * 3))
    assert body_motion(np.zeros((0, 3))) == 0.0


def test_writer_rejects_bad_shapes(tmp_path):
    with pytest.raises(ValueError, match=r"\[3, T, 25, M\]"):
        write_ntu_skeleton(tmp_path / "x.skeleton", np.zeros((3, 4, 24, 1), np.float32))
    with pytest.raises(ValueError, match="body_ids"):
        write_ntu_skeleton(tmp_path / "x.skeleton", np.ones((3, 4, 25, 2), np.float32), body_ids=[1])
