"""skptm._writers: per-image results written to files and read back.

Tested, on real files under ``tmp_path`` read back with numpy, :mod:`csv`
and pandas:

- :func:`~skptm._writers.paths_sidecar` names the ``.paths.txt`` file beside an ``.npy``;
- :func:`~skptm._writers.write_features` in ``.npy`` (array and dtype kept, paths
  one a line in the sidecar), ``.csv`` (a ``path`` column then the feature names;
  float32 values round-trip bit for bit) and ``.parquet`` (same columns, float32
  kept); suffixes matched whatever their case; other suffixes refused with a
  ``ValueError`` naming the file and the allowed suffixes, writing nothing;
- :func:`~skptm._writers.write_cluster_table`: rows in input order, cluster ``-1``
  written as empty cells;
- :func:`~skptm._writers.write_predictions`: the label is the most probable class
  (int or str classes), an all-NaN row gets an empty label and ``None`` back.
"""

import csv
import re

import numpy as np
import pytest

from skptm._writers import (
    FEATURE_SUFFIXES,
    paths_sidecar,
    write_cluster_table,
    write_features,
    write_predictions,
)

#: Paths a CSV or a line-per-path file could get wrong: a comma, a double
#: quote, spaces, non-ASCII letters (composed and not), an emoji.
AWKWARD_PATHS = [
    "images/plain.jpg",
    "images/with, comma.png",
    'images/say "cheese".jpg',
    "images/ünïcödé/café.jpg",
    "images/日本語/写真 1.jpg",
    "images/e\u0301mile 🐈.webp",
]


def _features(n_rows, n_features, seed=0):
    """float32 features spanning many magnitudes, with the float32 values a
    short decimal would round wrongly (extremes, subnormals, signed zero)."""
    rng = np.random.default_rng(seed)
    features = (rng.standard_normal((n_rows, n_features)) * 10.0 ** rng.integers(-30, 30, (n_rows, n_features))).astype(
        np.float32
    )
    info = np.finfo(np.float32)
    special = [info.max, -info.max, info.tiny, info.smallest_subnormal, -0.0, 1 / 3, 0.1, 16777217.0]
    flat = features.reshape(-1)
    count = min(len(special), flat.size)
    flat[:count] = np.array(special[:count], dtype=np.float32)
    return features


def _bits(array):
    return np.asarray(array, dtype=np.float32).view(np.uint32)


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


# --- paths_sidecar -------------------------------------------------------------------------------


def test_paths_sidecar_sits_beside_the_npy_with_its_stem(tmp_path):
    assert paths_sidecar(tmp_path / "out" / "features.npy") == tmp_path / "out" / "features.paths.txt"
    assert paths_sidecar("run.2024.npy").name == "run.2024.paths.txt"  # only the last suffix is replaced


# --- write_features: .npy ------------------------------------------------------------------------


def test_npy_keeps_the_array_its_dtype_and_row_order(tmp_path):
    features = _features(len(AWKWARD_PATHS), 5)
    output = tmp_path / "features.npy"
    write_features(output, AWKWARD_PATHS, features, [f"f{i}" for i in range(5)])
    loaded = np.load(output)
    assert loaded.dtype == np.float32
    assert loaded.shape == features.shape
    assert np.array_equal(_bits(loaded), _bits(features))


def test_npy_sidecar_lists_the_paths_one_a_line_in_order(tmp_path):
    output = tmp_path / "features.npy"
    write_features(output, AWKWARD_PATHS, _features(len(AWKWARD_PATHS), 3), ["a", "b", "c"])
    text = paths_sidecar(output).read_bytes().decode("utf-8")
    assert text.endswith("\n")
    assert text.split("\n")[:-1] == AWKWARD_PATHS  # a comma or a quote is kept as is, not CSV-quoted
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features.npy", "features.paths.txt"]


def test_npy_accepts_a_string_output_path(tmp_path):
    output = str(tmp_path / "features.npy")
    write_features(output, ["a.jpg", "b.jpg"], np.eye(2, dtype=np.float32), ["x", "y"])
    assert np.array_equal(np.load(output), np.eye(2, dtype=np.float32))
    assert (tmp_path / "features.paths.txt").read_text(encoding="utf-8") == "a.jpg\nb.jpg\n"


def test_npy_suffix_in_upper_case_writes_the_named_file(tmp_path):
    features = _features(2, 3)
    output = tmp_path / "features.NPY"
    write_features(output, ["a.jpg", "b.jpg"], features, ["x", "y", "z"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features.NPY", "features.paths.txt"]
    assert np.array_equal(_bits(np.load(output)), _bits(features))


def test_paths_and_rows_must_match_one_to_one(tmp_path):
    with pytest.raises(ValueError, match="3 paths for 2 rows"):
        write_features(tmp_path / "features.npy", ["a", "b", "c"], _features(2, 3), ["x", "y", "z"])
    assert list(tmp_path.iterdir()) == []


# --- write_features: .csv ------------------------------------------------------------------------


def test_csv_header_is_path_then_the_feature_names(tmp_path):
    output = tmp_path / "features.csv"
    names = ["mobilenet_v2_0", "mobilenet_v2_1", "mobilenet_v2_2"]
    write_features(output, ["a.jpg"], np.zeros((1, 3), np.float32), names)
    rows = _read_csv(output)
    assert rows[0] == ["path", *names]
    assert len(rows) == 2


def test_csv_float32_values_round_trip_bit_for_bit(tmp_path):
    features = _features(40, 16, seed=1)
    paths = [f"img_{i:03d}.jpg" for i in range(len(features))]
    output = tmp_path / "features.csv"
    write_features(output, paths, features, [f"f{i}" for i in range(16)])
    rows = _read_csv(output)[1:]
    assert [row[0] for row in rows] == paths
    # Each cell parsed exactly (Python's float), then rounded to float32.
    read = np.array([[float(cell) for cell in row[1:]] for row in rows]).astype(np.float32)
    assert np.array_equal(_bits(read), _bits(features))
    # ... and with 9 significant digits at most, as documented.
    digits = {len(re.sub(r"[-.]|e.*$", "", cell).lstrip("0")) for row in rows for cell in row[1:]}
    assert max(digits) <= 9


def test_csv_quotes_awkward_paths_and_keeps_their_order(tmp_path):
    features = _features(len(AWKWARD_PATHS), 2, seed=2)
    output = tmp_path / "features.csv"
    write_features(output, AWKWARD_PATHS, features, ["a", "b"])
    rows = _read_csv(output)
    assert [row[0] for row in rows[1:]] == AWKWARD_PATHS
    assert all(len(row) == 3 for row in rows)


def test_csv_nan_rows_read_back_as_nan(tmp_path):
    features = np.array([[1.5, -2.0], [np.nan, np.nan], [0.25, 4.0]], dtype=np.float32)
    output = tmp_path / "features.csv"
    write_features(output, ["a.jpg", "broken.jpg", "c.jpg"], features, ["x", "y"])
    read = np.array([[float(cell) for cell in row[1:]] for row in _read_csv(output)[1:]], dtype=np.float32)
    assert np.isnan(read[1]).all()
    assert np.array_equal(read[[0, 2]], features[[0, 2]])


def test_csv_reads_back_with_pandas(tmp_path):
    pd = pytest.importorskip("pandas")
    features = _features(len(AWKWARD_PATHS), 4, seed=3)
    output = tmp_path / "features.csv"
    write_features(output, AWKWARD_PATHS, features, ["w", "x", "y", "z"])
    frame = pd.read_csv(output, encoding="utf-8")
    assert list(frame.columns) == ["path", "w", "x", "y", "z"]
    assert frame["path"].tolist() == AWKWARD_PATHS
    assert np.array_equal(_bits(frame[["w", "x", "y", "z"]].to_numpy().astype(np.float32)), _bits(features))


def test_csv_suffix_in_upper_case_writes_csv(tmp_path):
    output = tmp_path / "features.CSV"
    write_features(output, ["a.jpg"], np.array([[0.5, 2.0]], np.float32), ["x", "y"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features.CSV"]
    assert _read_csv(output) == [["path", "x", "y"], ["a.jpg", "0.5", "2"]]


# --- write_features: .parquet --------------------------------------------------------------------


def test_parquet_has_the_csv_columns_and_keeps_float32(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    features = _features(len(AWKWARD_PATHS), 6, seed=4)
    names = [f"feat_{i}" for i in range(6)]
    output = tmp_path / "features.parquet"
    write_features(output, AWKWARD_PATHS, features, names)
    frame = pd.read_parquet(output)
    assert list(frame.columns) == ["path", *names]
    assert frame["path"].tolist() == AWKWARD_PATHS
    assert all(frame[name].dtype == np.float32 for name in names)
    assert np.array_equal(_bits(frame[names].to_numpy()), _bits(features))


def test_parquet_suffix_in_mixed_case_writes_parquet(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    output = tmp_path / "features.Parquet"
    write_features(output, ["a.jpg", "b.jpg"], np.array([[1.0], [2.0]], np.float32), ["x"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features.Parquet"]
    assert pd.read_parquet(output)["x"].tolist() == [1.0, 2.0]


# --- write_features: unsupported suffixes --------------------------------------------------------


@pytest.mark.parametrize("name", ["features.txt", "features.npz", "features.csv.gz", "features"])
def test_unsupported_suffix_raises_naming_the_file_and_the_suffixes(tmp_path, name):
    output = tmp_path / name
    with pytest.raises(ValueError, match=re.escape(str(output))) as raised:
        write_features(output, ["a.jpg"], np.zeros((1, 2), np.float32), ["x", "y"])
    assert all(suffix in str(raised.value) for suffix in FEATURE_SUFFIXES)
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a sidecar


def test_feature_suffixes_are_the_three_documented_ones():
    assert FEATURE_SUFFIXES == (".npy", ".csv", ".parquet")


# --- write_cluster_table -------------------------------------------------------------------------


def test_cluster_table_rows_in_input_order_with_header(tmp_path):
    output = tmp_path / "clusters.csv"
    paths = ["c.jpg", "a.jpg", "b, with comma.jpg", "ü.jpg"]
    clusters = np.array([2, 0, 1, 0])
    distances = np.array([0.125, 3.0, 1.0 / 3.0, 12.5])
    write_cluster_table(output, paths, clusters, distances)
    assert _read_csv(output) == [
        ["path", "cluster", "distance"],
        ["c.jpg", "2", "0.125000"],
        ["a.jpg", "0", "3.000000"],
        ["b, with comma.jpg", "1", "0.333333"],
        ["ü.jpg", "0", "12.500000"],
    ]


def test_cluster_minus_one_is_written_as_empty_cells(tmp_path):
    output = tmp_path / "clusters.csv"
    paths = ["good.jpg", "broken.jpg", "also_good.jpg"]
    write_cluster_table(output, paths, np.array([1, -1, 0]), np.array([0.5, np.nan, 2.0]))
    rows = _read_csv(output)
    assert rows[2] == ["broken.jpg", "", ""]
    assert rows[1] == ["good.jpg", "1", "0.500000"]
    assert rows[3] == ["also_good.jpg", "0", "2.000000"]


def test_cluster_table_reads_back_with_pandas_as_missing_values(tmp_path):
    pd = pytest.importorskip("pandas")
    output = tmp_path / "clusters.csv"
    write_cluster_table(output, ["a.jpg", "b.jpg"], np.array([-1, 3], dtype=np.int64), np.array([7.0, 0.25]))
    frame = pd.read_csv(output)
    assert frame["path"].tolist() == ["a.jpg", "b.jpg"]
    assert np.isnan(frame.loc[0, "cluster"]) and np.isnan(frame.loc[0, "distance"])
    assert frame.loc[1, "cluster"] == 3 and frame.loc[1, "distance"] == 0.25


# --- write_predictions ---------------------------------------------------------------------------


def test_predictions_label_is_the_most_probable_string_class(tmp_path):
    output = tmp_path / "predictions.csv"
    classes = ["cat", "dog", "bird"]
    proba = np.array([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1], [0.2, 0.3, 0.5]])
    labels = write_predictions(output, ["x.jpg", "y.jpg", "z.jpg"], classes, proba)
    assert labels == ["dog", "cat", "bird"]
    rows = _read_csv(output)
    assert rows[0] == ["path", "label", "proba_cat", "proba_dog", "proba_bird"]
    assert [row[:2] for row in rows[1:]] == [["x.jpg", "dog"], ["y.jpg", "cat"], ["z.jpg", "bird"]]
    assert np.array_equal(np.array([[float(c) for c in row[2:]] for row in rows[1:]]), proba)


def test_predictions_with_integer_classes(tmp_path):
    output = tmp_path / "predictions.csv"
    classes = list(np.array([3, 7]))  # as the CLI passes them: list(model.classes_)
    proba = np.array([[0.9, 0.1], [0.25, 0.75]], dtype=np.float32)
    labels = write_predictions(output, ["a.jpg", "b.jpg"], classes, proba)
    assert labels == [3, 7]
    rows = _read_csv(output)
    assert rows[0] == ["path", "label", "proba_3", "proba_7"]
    assert [row[1] for row in rows[1:]] == ["3", "7"]
    read = np.array([[float(c) for c in row[2:]] for row in rows[1:]]).astype(np.float32)
    assert np.array_equal(_bits(read), _bits(proba))


def test_predictions_nan_row_gets_empty_label_and_none(tmp_path):
    output = tmp_path / "predictions.csv"
    classes = ["no", "yes"]
    proba = np.array([[0.2, 0.8], [np.nan, np.nan], [0.55, 0.45]])
    labels = write_predictions(output, ["a.jpg", "broken.jpg", "c.jpg"], classes, proba)
    assert labels == ["yes", None, "no"]
    rows = _read_csv(output)
    assert rows[2][:2] == ["broken.jpg", ""]
    assert all(np.isnan(float(cell)) for cell in rows[2][2:])
    assert [row[1] for row in rows[1:]] == ["yes", "", "no"]


def test_predictions_keep_awkward_paths_in_order(tmp_path):
    output = tmp_path / "predictions.csv"
    proba = np.tile([[0.3, 0.7]], (len(AWKWARD_PATHS), 1))
    labels = write_predictions(output, AWKWARD_PATHS, ["a", "b"], proba)
    assert labels == ["b"] * len(AWKWARD_PATHS)
    assert [row[0] for row in _read_csv(output)[1:]] == AWKWARD_PATHS


def test_predictions_read_back_with_pandas(tmp_path):
    pd = pytest.importorskip("pandas")
    output = tmp_path / "predictions.csv"
    proba = np.array([[0.25, 0.75], [np.nan, np.nan]])
    write_predictions(output, ["a.jpg", "b.jpg"], ["left", "right"], proba)
    frame = pd.read_csv(output, keep_default_na=False, na_values={"proba_left": ["nan"], "proba_right": ["nan"]})
    assert frame["label"].tolist() == ["right", ""]
    assert frame["proba_right"].iloc[0] == 0.75
    assert frame[["proba_left", "proba_right"]].iloc[1].isna().all()
