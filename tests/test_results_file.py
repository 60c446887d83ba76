"""The results file of an experiment (results.jsonl): a damaged record or a file that is not UTF-8 is a one-line
data error."""

import json

import pytest

from rnnkit.errors import DataError


def test_a_results_record_missing_fields_or_a_non_utf8_file_is_a_data_error(tmp_path):
    from rnnkit.training.results import read_results

    path = tmp_path / "results.jsonl"
    header = json.dumps({"rnnkit_results": 1, "experiment": "reber", "definition": {}, "options": {}})
    path.write_text(header + "\n" + json.dumps({"key": "lstm/T0/seed5"}) + "\n")
    with pytest.raises(DataError, match="line 2 is damaged: a run record lacks cell"):
        read_results(path)
    path.write_bytes(b"\xff\xfe garbage\n")
    with pytest.raises(DataError, match="not UTF-8"):
        read_results(path)
