"""NTU RGB+D 60/120: sample names, class names, benchmark splits, normalisation, conversion, zero-shot splits.

Sample names are ``SsssCcccPpppRrrrAaaa`` (setup, camera, performer/subject, replication, action; 1-based).
NTU60 is setups 1-17 and actions 1-60; NTU120 adds setups 18-32 and actions 61-120.

Conversion (:func:`convert_ntu`) reads ``.skeleton`` files in parallel, caches per-chunk results in a
sidecar folder so a killed run resumes, and assembles ``x_train, y_train, x_test, y_test, files_train,
files_test`` (x float32 ``[N, 3, T, 25, 2]``, y int64 = action id - 1, files = sample names).

Modules: :mod:`~ski_lvlm.data.ntu.names` (sample and class names, benchmark splits, packaged lists),
:mod:`~ski_lvlm.data.ntu.normalize` (centring, view alignment, temporal resampling),
:mod:`~ski_lvlm.data.ntu.convert` (``.skeleton`` -> npz) and :mod:`~ski_lvlm.data.ntu.manifests`
(``video_path,skeleton_path,label`` CSVs and zero-shot split manifests). Their public names are
importable from here.
"""

from __future__ import annotations

from ski_lvlm.data.ntu.convert import ConvertOptions, convert_ntu
from ski_lvlm.data.ntu.manifests import (
    ManifestRow,
    build_zsl_manifests,
    find_samples,
    read_manifest,
    write_manifest,
)
from ski_lvlm.data.ntu.names import (
    BENCHMARKS,
    NTU60_CLASS_NAMES,
    NTU60_XSUB_TRAIN_SUBJECTS,
    NTU120_CLASS_NAMES,
    NTU120_XSUB_TRAIN_SUBJECTS,
    XVIEW_TRAIN_CAMERAS,
    ZSL_SPLITS,
    NtuName,
    class_id,
    is_ntu60,
    is_train_sample,
    load_missing_list,
    load_zsl_classes,
    parse_ntu_name,
    resource_path,
)
from ski_lvlm.data.ntu.normalize import SAMPLINGS, align_view, center_on_spine, temporal_resample, valid_length

__all__ = [
    "NTU120_CLASS_NAMES",
    "NTU60_CLASS_NAMES",
    "NTU60_XSUB_TRAIN_SUBJECTS",
    "NTU120_XSUB_TRAIN_SUBJECTS",
    "XVIEW_TRAIN_CAMERAS",
    "BENCHMARKS",
    "ZSL_SPLITS",
    "NtuName",
    "parse_ntu_name",
    "is_ntu60",
    "is_train_sample",
    "class_id",
    "resource_path",
    "load_missing_list",
    "load_zsl_classes",
    "center_on_spine",
    "align_view",
    "valid_length",
    "temporal_resample",
    "SAMPLINGS",
    "ConvertOptions",
    "convert_ntu",
    "ManifestRow",
    "read_manifest",
    "write_manifest",
    "find_samples",
    "build_zsl_manifests",
]
