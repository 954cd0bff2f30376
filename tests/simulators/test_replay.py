"""Tests for simulators.replay: loading recorded z-stacks and serving planes by z."""

from __future__ import annotations

from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import tifffile

from autofocus.errors import InvalidInputError, ReplayError
from simulators.replay import ZStack, z_from_name

SHAPE = (6, 7)


def plane(value: int, dtype: type = np.uint16, shape: tuple[int, int] = SHAPE) -> np.ndarray:
    """A plane whose pixels are value + 0..(H*W - 1) (so planes differ everywhere)."""
    return (np.arange(shape[0] * shape[1]).reshape(shape) + value).astype(dtype)


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- file names


@pytest.mark.parametrize(
    ("name", "z"),
    [
        ("stack_z-12.5um.tif", -12.5),
        ("stack_z12.5um.tif", 12.5),
        ("img_z_3um.png", 3.0),
        ("img_Z+0.25UM.tiff", 0.25),
        ("z=3.0.tif", 3.0),
        ("cell_z=-2.tif", -2.0),
        ("cell_z_um=4.5_c1.tif", 4.5),
        ("plane-z=1.5um.ome.tif", 1.5),
        ("a_z\u00b5m.tif", None),
        ("img_z012_.tif", None),
        ("img_012.tif", None),
        ("pixel_0.65um.tif", None),
        ("fuzz=3.tif", None),
        ("z3.tif", None),
    ],
)
def test_z_from_name_patterns(name: str, z: float | None) -> None:
    assert z_from_name(name) == z


def test_z_from_name_micro_sign_and_ambiguity() -> None:
    assert z_from_name("s_z2.5\u00b5m.tif") == 2.5
    with pytest.raises(ReplayError, match="several z positions"):
        z_from_name("z=1_z=2.tif")


# --------------------------------------------------------------------------- loading


def test_folder_with_z_in_names_is_sorted_by_z(tmp_path: Path) -> None:
    for z, value in [(2.0, 200), (-1.0, 100), (0.5, 150)]:
        tifffile.imwrite(tmp_path / f"stack_z{z:+.1f}um.tif", plane(value))
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / ".hidden_z9um.tif").write_bytes(b"not an image")
    stack = ZStack.load(tmp_path)
    np.testing.assert_array_equal(stack.z_um, [-1.0, 0.5, 2.0])
    assert stack.shape == SHAPE
    assert stack.dtype == np.uint16
    assert len(stack) == 3
    assert stack.names == ("stack_z-1.0um.tif", "stack_z+0.5um.tif", "stack_z+2.0um.tif")
    np.testing.assert_array_equal(stack.frames[0], plane(100))
    np.testing.assert_array_equal(stack.frames[2], plane(200))
    assert stack.true_focus_um is None
    with pytest.raises(ValueError):
        stack.frames[0, 0, 0] = 1  # read-only
    with pytest.raises(ValueError):
        stack.z_um[0] = 3.0


def test_folder_with_csv_loads_only_listed_files(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "a.tif", plane(10))
    tifffile.imwrite(tmp_path / "b.tif", plane(20))
    (tmp_path / "c.png").write_bytes(imagecodecs.png_encode(plane(30)))
    tifffile.imwrite(tmp_path / "unlisted.tif", plane(99, shape=(3, 3)))
    csv = write_csv(tmp_path / "z.csv", "file,z_um,comment\nc.png,0.0,x\na.tif,1.0,y\nb.tif,-3,\n")
    stack = ZStack.load(tmp_path, z_csv=csv, true_focus_um=0.25)
    np.testing.assert_array_equal(stack.z_um, [-3.0, 0.0, 1.0])
    assert stack.names == ("b.tif", "c.png", "a.tif")
    np.testing.assert_array_equal(stack.plane_at(0.0), plane(30))  # PNG keeps uint16
    assert stack.true_focus_um == 0.25


def test_csv_wins_over_names_and_step(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "p_z=5.tif", plane(1))
    tifffile.imwrite(tmp_path / "p_z=6.tif", plane(2))
    csv = write_csv(tmp_path / "z.csv", "file,z_um\np_z=5.tif,10\np_z=6.tif,-10\n")
    stack = ZStack.load(tmp_path, z_csv=csv, z_step_um=3.0)
    np.testing.assert_array_equal(stack.z_um, [-10.0, 10.0])
    np.testing.assert_array_equal(stack.frames[0], plane(2))
    by_names = ZStack.load(tmp_path, z_step_um=3.0)  # names win over the step
    np.testing.assert_array_equal(by_names.z_um, [5.0, 6.0])


def test_folder_with_step_uses_natural_order_from_zero(tmp_path: Path) -> None:
    for i in (1, 2, 10):
        tifffile.imwrite(tmp_path / f"img{i}.tif", plane(i))
    stack = ZStack.load(tmp_path, z_step_um=0.5)
    np.testing.assert_array_equal(stack.z_um, [0.0, 0.5, 1.0])
    assert stack.names == ("img1.tif", "img2.tif", "img10.tif")
    reversed_stack = ZStack.load(tmp_path, z_step_um=-0.5)  # recorded top-down
    assert reversed_stack.names == ("img10.tif", "img2.tif", "img1.tif")
    np.testing.assert_array_equal(reversed_stack.z_um, [-1.0, -0.5, 0.0])


def test_multipage_tiff_with_csv(tmp_path: Path) -> None:
    data = np.stack([plane(v) for v in (0, 100, 200, 300)])
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, data, photometric="minisblack")
    csv = write_csv(tmp_path / "z.csv", "index,z_um\n0,3.0\n1,1.0\n2,2.0\n3,0.0\n")
    stack = ZStack.load(path, z_csv=csv)
    np.testing.assert_array_equal(stack.z_um, [0.0, 1.0, 2.0, 3.0])
    for z, value in [(0.0, 300), (1.0, 100), (2.0, 200), (3.0, 0)]:
        np.testing.assert_array_equal(stack.plane_at(z), plane(value))
    assert stack.names == ("page 3", "page 1", "page 2", "page 0")


def test_multipage_tiff_with_step(tmp_path: Path) -> None:
    path = tmp_path / "stack.tiff"
    tifffile.imwrite(
        path,
        np.stack([plane(v, np.float32) for v in (0, 10, 20, 30, 40)]),
        photometric="minisblack",
    )
    stack = ZStack.load(path, z_step_um=0.25)
    np.testing.assert_array_equal(stack.z_um, [0.0, 0.25, 0.5, 0.75, 1.0])
    assert stack.dtype == np.float32


def test_three_planes_stored_as_planar_rgb_are_read_as_z(tmp_path: Path) -> None:
    path = tmp_path / "three.tif"
    data = np.stack([plane(v) for v in (0, 10, 20)])
    tifffile.imwrite(path, data, photometric="rgb", planarconfig="separate")
    stack = ZStack.load(path, z_step_um=2.0)
    np.testing.assert_array_equal(stack.frames, data)
    np.testing.assert_array_equal(stack.z_um, [0.0, 2.0, 4.0])


def test_ome_and_imagej_tiff_record_their_z_step(tmp_path: Path) -> None:
    data = np.stack([plane(v) for v in (0, 10, 20)])
    ome = tmp_path / "s.ome.tif"
    tifffile.imwrite(ome, data, metadata={"axes": "ZYX", "PhysicalSizeZ": 0.4})
    np.testing.assert_allclose(ZStack.load(ome).z_um, [0.0, 0.4, 0.8])
    np.testing.assert_allclose(ZStack.load(ome, z_step_um=9.0).z_um, [0.0, 0.4, 0.8])
    ij = tmp_path / "ij.tif"
    tifffile.imwrite(ij, data, imagej=True, metadata={"axes": "ZYX", "spacing": 1.5})
    np.testing.assert_allclose(ZStack.load(ij).z_um, [0.0, 1.5, 3.0])


# --------------------------------------------------------------------------- plane lookup


@pytest.fixture
def simple_stack() -> ZStack:
    frames = np.stack([np.full((4, 5), v, dtype=np.uint16) for v in (0, 100, 300)])
    return ZStack(frames, [0.0, 1.0, 3.0], true_focus_um=1.0)


def test_nearest_plane(simple_stack: ZStack) -> None:
    for z, value in [(0.0, 0), (0.49, 0), (0.5, 0), (0.51, 100), (1.9, 100), (2.1, 300), (3, 300)]:
        out = simple_stack.plane_at(z)
        assert out.dtype == np.uint16
        assert out.shape == (4, 5)
        assert np.all(out == value), z
    out = simple_stack.plane_at(1.0)
    out[:] = 7  # a copy: the stack is untouched
    assert np.all(simple_stack.plane_at(1.0) == 100)


def test_interpolated_plane_is_linear_and_float32(simple_stack: ZStack) -> None:
    for z, value in [(0.0, 0.0), (0.25, 25.0), (0.5, 50.0), (1.0, 100.0), (2.5, 250.0), (3, 300)]:
        out = simple_stack.plane_at(z, interpolate=True)
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, value, rtol=0, atol=1e-4)
    assert np.all(simple_stack.plane_at(1.5, interpolate=True) == 150.0)


def test_out_of_range_z_is_clamped_and_reported(simple_stack: ZStack) -> None:
    assert np.all(simple_stack.plane_at(-50.0) == 0)
    assert np.all(simple_stack.plane_at(50.0, interpolate=True) == 300.0)
    below = simple_stack.locate(-2.0)
    assert below.clamped
    assert below.z_used_um == 0.0
    assert below.z_requested_um == -2.0
    assert below.nearest_index == 0
    above = simple_stack.locate(4.0)
    assert above.clamped and above.z_used_um == 3.0 and above.nearest_index == 2
    inside = simple_stack.locate(2.0)
    assert not inside.clamped
    assert inside.index_below == 1
    assert inside.weight_above == pytest.approx(0.5)
    assert simple_stack.contains(3.0) and not simple_stack.contains(3.0001)
    assert simple_stack.z_range_um == (0.0, 3.0)


def test_bad_z_requests(simple_stack: ZStack) -> None:
    for bad in (float("nan"), float("inf"), "top", None):
        with pytest.raises(InvalidInputError):
            simple_stack.plane_at(bad)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- errors


def test_error_is_an_invalid_input_error() -> None:
    assert issubclass(ReplayError, InvalidInputError)


def test_missing_path_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match="does not exist"):
        ZStack.load(tmp_path / "nope")
    with pytest.raises(ReplayError, match="no image files"):
        ZStack.load(tmp_path, z_step_um=1.0)
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(ReplayError, match="neither a folder nor"):
        ZStack.load(tmp_path / "x.txt")


def test_no_z_information(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "img_z001_.tif", plane(1))
    tifffile.imwrite(tmp_path / "img_z002_.tif", plane(2))
    with pytest.raises(ReplayError, match="no z information"):
        ZStack.load(tmp_path)
    path = tmp_path / "multi.tif"
    tifffile.imwrite(path, np.stack([plane(1), plane(2)]))
    with pytest.raises(ReplayError, match="no z information"):
        ZStack.load(path)


def test_some_names_without_z(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "a_z1um.tif", plane(1))
    tifffile.imwrite(tmp_path / "b.tif", plane(2))
    with pytest.raises(ReplayError, match=r"without: b\.tif"):
        ZStack.load(tmp_path)


def test_inconsistent_frames(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "a_z1um.tif", plane(1))
    tifffile.imwrite(tmp_path / "b_z2um.tif", plane(2, shape=(6, 8)))
    with pytest.raises(ReplayError, match="px"):
        ZStack.load(tmp_path)
    (tmp_path / "b_z2um.tif").unlink()
    tifffile.imwrite(tmp_path / "b_z2um.tif", plane(2, np.uint8))
    with pytest.raises(ReplayError, match="dtype"):
        ZStack.load(tmp_path)


def test_csv_errors(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "a.tif", plane(1))
    tifffile.imwrite(tmp_path / "b.tif", plane(2))
    cases = {
        "missing_file": ("file,z_um\na.tif,0\nc.tif,1\n", "does not exist"),
        "no_header": ("a.tif,0\nb.tif,1\n", "header"),
        "wrong_key": ("index,z_um\n0,0\n1,1\n", "header"),
        "nan": ("file,z_um\na.tif,0\nb.tif,nan\n", "finite"),
        "text": ("file,z_um\na.tif,0\nb.tif,high\n", "not a number"),
        "twice": ("file,z_um\na.tif,0\na.tif,1\n", "listed twice"),
        "empty": ("", "empty"),
        "header_only": ("file,z_um\n", "no rows"),
        "one_plane": ("file,z_um\na.tif,0\n", "at least 2"),
        "duplicate_z": ("file,z_um\na.tif,1.5\nb.tif,1.5\n", "duplicate z"),
    }
    for name, (text, message) in cases.items():
        csv = write_csv(tmp_path / f"{name}.csv", text)
        with pytest.raises(ReplayError, match=message):
            ZStack.load(tmp_path, z_csv=csv)
    with pytest.raises(ReplayError, match="does not exist"):
        ZStack.load(tmp_path, z_csv=tmp_path / "absent.csv")


def test_multipage_csv_errors(tmp_path: Path) -> None:
    path = tmp_path / "s.tif"
    tifffile.imwrite(path, np.stack([plane(v) for v in (0, 1, 2)]), photometric="minisblack")
    cases = {
        "range": ("index,z_um\n0,0\n1,1\n3,2\n", "outside"),
        "missing": ("index,z_um\n0,0\n1,1\n", "missing indices"),
        "twice": ("index,z_um\n0,0\n1,1\n1,2\n", "listed twice"),
        "not_int": ("index,z_um\n0,0\n1,1\nx,2\n", "not an integer"),
        "inf": ("index,z_um\n0,0\n1,inf\n2,2\n", "finite"),
    }
    for name, (text, message) in cases.items():
        csv = write_csv(tmp_path / f"{name}.csv", text)
        with pytest.raises(ReplayError, match=message):
            ZStack.load(path, z_csv=csv)


def test_bad_tiff_content(tmp_path: Path) -> None:
    single = tmp_path / "single.tif"
    tifffile.imwrite(single, plane(1))
    with pytest.raises(ReplayError, match="single plane"):
        ZStack.load(single, z_step_um=1.0)
    rgb = tmp_path / "rgb.tif"
    tifffile.imwrite(rgb, np.zeros((8, 9, 3), dtype=np.uint8), photometric="rgb")
    with pytest.raises(ReplayError):
        ZStack.load(rgb, z_step_um=1.0)
    four_d = tmp_path / "czyx.tif"
    tifffile.imwrite(four_d, np.zeros((2, 5, 8, 9), dtype=np.uint16), photometric="minisblack")
    with pytest.raises(ReplayError, match="axes"):
        ZStack.load(four_d, z_step_um=1.0)
    garbage = tmp_path / "garbage.tif"
    garbage.write_bytes(b"this is not a tiff")
    with pytest.raises(ReplayError, match="cannot read"):
        ZStack.load(garbage, z_step_um=1.0)
    folder = tmp_path / "folder"
    folder.mkdir()
    tifffile.imwrite(folder / "a_z1um.tif", np.stack([plane(1), plane(2)]))
    tifffile.imwrite(folder / "b_z2um.tif", plane(1))
    with pytest.raises(ReplayError, match="one plane per file"):
        ZStack.load(folder)


def test_bad_step_values(tmp_path: Path) -> None:
    path = tmp_path / "s.tif"
    tifffile.imwrite(path, np.stack([plane(1), plane(2)]))
    for bad in (0.0, float("nan"), float("inf"), "one"):
        with pytest.raises(ReplayError, match="z_step_um"):
            ZStack.load(path, z_step_um=bad)  # type: ignore[arg-type]


def test_constructor_validation() -> None:
    good = [plane(1), plane(2)]
    with pytest.raises(ReplayError, match="at least 2"):
        ZStack([plane(1)], [0.0])
    with pytest.raises(ReplayError, match="non-finite"):
        ZStack(good, [0.0, float("nan")])
    with pytest.raises(ReplayError, match="one z position per plane"):
        ZStack(good, [0.0, 1.0, 2.0])
    with pytest.raises(ReplayError, match="duplicate"):
        ZStack(good, [1.0, 1.0])
    nan_plane = plane(1, np.float32)
    nan_plane[0, 0] = np.nan
    with pytest.raises(ReplayError, match="NaN"):
        ZStack([nan_plane, plane(2, np.float32)], [0.0, 1.0])
    with pytest.raises(ReplayError, match="shape"):
        ZStack(plane(1), [0.0, 1.0])
    with pytest.raises(ReplayError, match="true_focus_um"):
        ZStack(good, [0.0, 1.0], true_focus_um=float("nan"))
    stack = ZStack(np.stack(good), np.array([1.0, 0.0]))
    np.testing.assert_array_equal(stack.frames[0], plane(2))
    assert "2 planes" in repr(stack)
