"""Tests for tfrec_dyn.data.readers: every format, bad input, and the real files."""

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tfrec_dyn.data.readers import (
    DataFormatError,
    read_jd_sessions,
    read_log,
    read_movielens_100k,
    read_movielens_1m,
    read_user_item,
)

REPO = Path(__file__).resolve().parents[1]
ML_100K = REPO / "tfrec_dyn" / "data" / "resources" / "ml-100k"
JD_MICRO = REPO.parent / "shared" / "data" / "jd-micro"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def as_dict(data, field=None):
    """user id -> list of items (or of one side field's values)."""
    seqs = data.items if field is None else data.side[field]
    return {user: seq.tolist() for user, seq in zip(data.user_ids, seqs)}


def assert_balanced(report):
    assert report.lines_read == report.kept + report.dropped_total


# ------------------------------------------------------------- MovieLens
def test_movielens_100k_orders_by_time_with_ties_in_file_order(tmp_path):
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    write(folder / "u.data", "1\t10\t5\t300\n2\t20\t3\t100\n1\t11\t4\t100\n1\t12\t2\t300\n1\t13\t1\t200\n")
    for path in (folder, folder / "u.data"):
        data = read_movielens_100k(path)
        assert data.user_ids == ["1", "2"]
        # time 100, 200, then the two at 300 in file order (10 before 12).
        assert as_dict(data) == {"1": ["11", "13", "10", "12"], "2": ["20"]}
        assert as_dict(data, "timestamp") == {"1": [100, 200, 300, 300], "2": [100]}
        assert as_dict(data, "rating") == {"1": [4, 1, 5, 2], "2": [3]}
        assert data.side["rating"][0].dtype == np.float64
        assert data.report.lines_read == data.report.kept == 5
        assert data.report.dropped == {}


def test_movielens_1m_reads_double_colon_lines(tmp_path):
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    write(
        folder / "ratings.dat",
        "1::1193::5::978300760\n1::661::3::978302109\n2::1357::5::978298709\n1::914::3::978300760\n",
    )
    data = read_movielens_1m(folder)
    assert as_dict(data) == {"1": ["1193", "914", "661"], "2": ["1357"]}
    assert as_dict(data, "rating") == {"1": [5, 3, 3], "2": [5]}
    assert data.side_fields == ("rating", "timestamp")
    assert read_movielens_1m(folder / "ratings.dat").num_interactions == 4


def test_movielens_bad_lines_are_counted_with_line_numbers_and_skipped(tmp_path):
    path = write(
        tmp_path / "u.data",
        "1\t10\t5\t100\n"  # 1 ok
        "1\t11\t4\n"  # 2 three fields
        "\n"  # 3 blank
        "2\t20\tfive\t100\n"  # 4 bad rating
        "2\t21\t3\tyesterday\n"  # 5 bad timestamp
        "\t22\t3\t100\n"  # 6 empty user
        "2\t23\t3\t200\r\n",  # 7 ok (CRLF)
    )
    data = read_movielens_100k(path)
    assert as_dict(data) == {"1": ["10"], "2": ["23"]}
    report = data.report
    assert (report.lines_read, report.kept) == (7, 2)
    assert report.dropped == {
        "wrong number of fields": 1,
        "blank line": 1,
        "bad rating": 1,
        "bad timestamp": 1,
        "bad user": 1,
    }
    assert [(number, reason) for number, reason, _ in report.examples] == [
        (2, "wrong number of fields"),
        (3, "blank line"),
        (4, "bad rating"),
        (5, "bad timestamp"),
        (6, "bad user"),
    ]
    assert report.examples[0][2] == "1\t11\t4"
    assert_balanced(report)
    assert "first at line(s) 2, 3, 4, 5, 6" in report.summary()


def test_strict_raises_naming_file_and_line(tmp_path):
    path = write(tmp_path / "u.data", "1\t10\t5\t100\n\n2\t20\tfive\t100\n")
    # The blank line 2 never raises; the bad rating on line 3 does.
    with pytest.raises(DataFormatError, match=r"u\.data, line 3: bad rating 'five'"):
        read_movielens_100k(path, strict=True)
    path = write(tmp_path / "ratings.dat", "1::10::5::100\n1::11::4\n")
    with pytest.raises(DataFormatError, match=r"ratings\.dat, line 2: 3 field\(s\), expected 4"):
        read_movielens_1m(path, strict=True)


def test_undecodable_line_is_dropped(tmp_path):
    path = tmp_path / "u.data"
    path.write_bytes(b"1\t10\t5\t100\n1\t\xff\xfe\t5\t200\n1\t12\t5\t300\n")
    data = read_movielens_100k(path)
    assert as_dict(data) == {"1": ["10", "12"]}
    assert data.report.dropped == {"not UTF-8": 1}
    assert data.report.examples[0][0] == 2


# ------------------------------------------------------------- user item
def test_user_item_keeps_file_order(tmp_path):
    path = write(tmp_path / "Beauty.txt", "1 30\n2 5\n1 10\n1 20\n\n2 7\n")
    data = read_user_item(path)
    assert as_dict(data) == {"1": ["30", "10", "20"], "2": ["5", "7"]}
    assert data.side == {}
    assert (data.report.lines_read, data.report.kept, data.report.dropped) == (6, 5, {"blank line": 1})


def test_user_item_bad_line(tmp_path):
    path = write(tmp_path / "seq.txt", "1 30\n1 31 extra\n1 32\n")
    data = read_user_item(path)
    assert as_dict(data) == {"1": ["30", "32"]}
    assert data.report.examples == [(2, "wrong number of fields", "1 31 extra")]
    with pytest.raises(DataFormatError, match=r"seq\.txt, line 2"):
        read_user_item(path, strict=True)


def _line_by_line(path, strict=False):
    from tfrec_dyn.data.readers import _read_line_format

    return _read_line_format(path, "user-item", strict)


def _vectorised(path):
    from tfrec_dyn.data.readers import _read_user_item_columns

    return _read_user_item_columns(path, False)


@pytest.mark.parametrize("ending", ["\n", "\r\n", ""], ids=["lf", "crlf", "no-final-newline"])
def test_user_item_vectorised_reader_equals_the_line_reader(tmp_path, ending):
    rng = np.random.default_rng(0)
    lines = [f"u{rng.integers(40)}\t i{rng.integers(300)}" if rng.random() < 0.5 else f"{rng.integers(40)} {rng.integers(300)}"
             for _ in range(400)]
    for position in rng.choice(400, 30, replace=False):  # 30 bad lines: more than the 20 cited
        lines[position] = rng.choice(["", "   ", "lonely", "a b c", "x\ty\tz\tw"])
    path = write(tmp_path / "seq.txt", "\n".join(lines).replace("\n", ending if ending else "\n") + ending)
    fast, slow = read_user_item(path), _line_by_line(path)
    assert _vectorised(path) is not None  # the file takes the vectorised path
    assert fast.user_ids == slow.user_ids and as_dict(fast) == as_dict(slow)
    assert fast.report == slow.report and len(fast.report.examples) == 20
    assert fast.report.dropped_total == 30 and fast.report.lines_read == 400
    with pytest.raises(DataFormatError) as vectorised:
        read_user_item(path, strict=True)
    with pytest.raises(DataFormatError) as line_by_line:
        _line_by_line(path, strict=True)
    assert str(vectorised.value) == str(line_by_line.value)
    # Items point at one string per distinct id: memory is a pointer per interaction.
    firsts = {}
    assert all(firsts.setdefault(item, item) is item for seq in fast.items for item in seq)


def test_user_item_with_utf8_ids_reads_line_by_line(tmp_path):
    path = write(tmp_path / "seq.txt", "ü 1\nü 2\n\x1c\n")  # \x1c: whitespace to str.split, not to bytes.split
    data = read_user_item(path)
    assert _vectorised(path) is None
    assert as_dict(data) == {"ü": ["1", "2"]} and data.report.dropped == {"blank line": 1}


# ------------------------------------------------------------------- JD
JD_TEXT = (
    "2024535+5+672+2+74 2024535+7+672+294+74 2692787+5+672+4+79\n"
    "642681+5+7371+17+17 oops 10055823354+5+7371+x+35 1145153+5+4837+7+7\n"
    "\n"
    "bad+token nothing+good\n"
    "817006+9+4840+11.5+13\n"
)


def _jd_line_by_line(path):
    from tfrec_dyn.data.readers import _read_jd_lines

    return _read_jd_lines(path, False)


def _same_interactions(a, b):
    assert a.user_ids == b.user_ids and a.report == b.report
    assert all(np.array_equal(x, y) for x, y in zip(a.items, b.items))
    assert sorted(a.side) == sorted(b.side)
    for name in a.side:
        assert all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(a.side[name], b.side[name])), name


@pytest.mark.parametrize("ending", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_jd_vectorised_reader_equals_the_line_reader(tmp_path, ending):
    from tfrec_dyn.data.readers import _read_jd_columns
    from tfrec_dyn.data.synthetic import LogSpec, generate_log

    path = tmp_path / "JD_synthetic"
    generate_log(LogSpec(num_users=300, num_items=500, mean_length=8, seed=1)).write(str(path), "jd")
    lines = path.read_text().splitlines()
    for position in range(0, len(lines), 12):  # 25 blank lines: more than the 20 cited
        lines[position] = " \t"
    lines[5] += ' 7+1+2+1e-3+.5 08+x+"y+-2+3. #9+NA+null+0+0'  # spellings `float` takes; no quoting, no NA
    path.write_text(ending.join(lines) + ending)
    assert _read_jd_columns(path) is not None  # the file takes the vectorised path
    _same_interactions(read_jd_sessions(path), _jd_line_by_line(path))
    assert read_jd_sessions(path).report.dropped_total == 25


@pytest.mark.parametrize("token", ["1+2+3+4", "1+2+3+4+5+6", "1++3+4+5", "+2+3+4+5", "1+2+3+4+", "1+2+3+x+5",
                                   "1+2+3+nan+5", "1+2+3+1_0+5", "ü+2+3+4+5"])
def test_jd_file_with_any_odd_token_is_read_line_by_line(tmp_path, token):
    from tfrec_dyn.data.readers import _read_jd_columns

    path = write(tmp_path / "JD_odd", f"10+1+5+1+2 {token} 11+1+5+2+3\n12+2+6+1+1\n")
    assert _read_jd_columns(path) is None
    _same_interactions(read_jd_sessions(path), _jd_line_by_line(path))


def test_jd_sessions_keep_all_five_fields(tmp_path):
    data = read_jd_sessions(write(tmp_path / "JD_sample", JD_TEXT))
    # One sequence per kept line, named by file and line number (as the Beam step names it).
    assert data.user_ids == ["JD_sample:1", "JD_sample:2", "JD_sample:5"]
    assert data.side_fields == ("behavior", "category", "time_interval", "dwell_time")
    by_line = lambda field=None: {user.split(":")[1]: v for user, v in as_dict(data, field).items()}
    assert by_line() == {
        "1": ["2024535", "2024535", "2692787"],
        "2": ["642681", "1145153"],
        "5": ["817006"],
    }
    assert by_line("behavior") == {"1": ["5", "7", "5"], "2": ["5", "5"], "5": ["9"]}
    assert by_line("category") == {"1": ["672", "672", "672"], "2": ["7371", "4837"], "5": ["4840"]}
    assert by_line("time_interval") == {"1": [2, 294, 4], "2": [17, 7], "5": [11.5]}
    assert by_line("dwell_time") == {"1": [74, 74, 79], "2": [17, 7], "5": [13]}
    assert data.side["dwell_time"][0].dtype == np.float64


def test_jd_malformed_tokens_are_skipped_and_empty_sessions_dropped(tmp_path):
    report = read_jd_sessions(write(tmp_path / "JD_sample", JD_TEXT)).report
    # Lines: 1, 2 and 5 kept; 3 blank; 4 has no valid micro-behaviour.
    assert (report.lines_read, report.kept) == (5, 3)
    assert report.dropped == {"blank line": 1, "no valid micro-behaviour": 1}
    assert_balanced(report)
    # The two bad tokens of line 2 are counted apart from the line balance.
    assert report.skipped == {"malformed micro-behaviour": 2}
    assert [(number, reason) for number, reason, _ in report.examples] == [
        (2, "malformed micro-behaviour"),
        (2, "malformed micro-behaviour"),
        (3, "blank line"),
        (4, "no valid micro-behaviour"),
    ]
    assert "micro-behaviour 2 'oops'" in report.examples[0][2]
    assert "micro-behaviour 3" in report.examples[1][2] and "bad time_interval 'x'" in report.examples[1][2]
    assert "skipped inside kept lines: malformed micro-behaviour: 2" in report.summary()


def test_jd_strict_raises_on_first_malformed_token(tmp_path):
    path = write(tmp_path / "JD_sample", JD_TEXT)
    with pytest.raises(DataFormatError, match=r"JD_sample, line 2: micro-behaviour 2 'oops'"):
        read_jd_sessions(path, strict=True)


# ------------------------------------------------------------------- logs
def test_csv_log_maps_columns_keeps_extras_and_orders_by_time(tmp_path):
    path = write(
        tmp_path / "events.csv",
        "uid,sku,ts,action,price,note\n"
        "u1,a,2024-01-02T00:00:00,click,9.5,plain\n"
        "u2,b,2024-01-01T00:00:00,view,1,\"with, comma\"\n"
        "u1,c,2024-01-01T00:00:00,buy,3,x\n"
        "u1,d,2024-01-02T00:00:00Z,view,4,y\n",
    )
    data = read_log(path, {"user": "uid", "item": "sku", "timestamp": "ts", "behavior": "action"})
    assert as_dict(data) == {"u1": ["c", "a", "d"], "u2": ["b"]}
    assert data.side_fields == ("timestamp", "behavior", "price", "note")
    assert as_dict(data, "timestamp")["u1"] == [1704067200.0, 1704153600.0, 1704153600.0]
    assert as_dict(data, "behavior")["u1"] == ["buy", "click", "view"]
    # Unmapped columns are kept as raw strings; quoted commas stay in the field.
    assert as_dict(data, "price")["u1"] == ["3", "9.5", "4"]
    assert as_dict(data, "note")["u2"] == ["with, comma"]
    assert data.report.kept == 4


def test_tsv_log_and_unmapped_canonical_names_get_raw_suffix(tmp_path):
    path = write(tmp_path / "log.tsv", "user\titem\trating\tcategory\n1\tx\t4.5\tshoes\n1\ty\t2\tbags\n")
    data = read_log(path, {"user": "user", "item": "item", "category": "category"})
    assert as_dict(data) == {"1": ["x", "y"]}
    # "rating" was not mapped: kept, but as raw text under "rating_raw".
    assert data.side_fields == ("category", "rating_raw")
    assert as_dict(data, "rating_raw") == {"1": ["4.5", "2"]}


def test_headerless_log_uses_positions(tmp_path):
    path = write(tmp_path / "log.csv", "7,a,30,extra\n7,b,10,more\n8,c,20,z\n")
    data = read_log(path, {"user": 0, "item": 1, "timestamp": 2}, header=False)
    assert as_dict(data) == {"7": ["b", "a"], "8": ["c"]}
    assert as_dict(data, "column_3") == {"7": ["more", "extra"], "8": ["z"]}
    with pytest.raises(ValueError, match="positions"):
        read_log(path, {"user": "uid", "item": 1}, header=False)


def test_jsonl_log_keeps_every_key(tmp_path):
    path = write(
        tmp_path / "log.jsonl",
        '{"u": 1, "i": "a", "t": 20, "dwell": 3.5, "tags": ["x", "y"]}\n'
        '{"u": 1, "i": "b", "t": 10, "dwell": "2", "page": "home"}\n'
        '{"u": 2, "i": "a", "t": 5}\n'
        "not json\n"
        "[1, 2]\n",
    )
    data = read_log(path, {"user": "u", "item": "i", "timestamp": "t"})
    assert as_dict(data) == {"1": ["b", "a"], "2": ["a"]}
    assert data.side_fields == ("timestamp", "dwell", "tags", "page")
    assert as_dict(data, "tags") == {"1": [None, ["x", "y"]], "2": [None]}
    assert as_dict(data, "page") == {"1": ["home", None], "2": [None]}
    assert data.report.dropped == {"invalid JSON": 1, "not a JSON object": 1}
    assert [number for number, _, _ in data.report.examples] == [4, 5]
    assert_balanced(data.report)

    typed = read_log(path, {"user": "u", "item": "i", "dwell_time": "dwell"})
    # Records lacking a mapped key are dropped, and the rest typed as floats.
    assert as_dict(typed, "dwell_time") == {"1": [3.5, 2.0]}
    assert typed.report.dropped["missing 'dwell'"] == 1


def test_log_errors_name_the_file(tmp_path):
    csv_path = write(tmp_path / "events.csv", "uid,sku\n1,a\n")
    with pytest.raises(DataFormatError, match=r"events\.csv: column\(s\) \['ts'\] not found"):
        read_log(csv_path, {"user": "uid", "item": "sku", "timestamp": "ts"})
    # A CSV given as TSV: the header does not split.
    with pytest.raises(DataFormatError, match=r"events\.csv: .*single field.*delimiter"):
        read_log(csv_path, {"user": "uid", "item": "sku"}, format="tsv")
    jsonl = write(tmp_path / "log.jsonl", '{"u": 1, "i": 2}\n')
    with pytest.raises(DataFormatError, match=r"log\.jsonl: none of its 1 line.*no key 'rating'"):
        read_log(jsonl, {"user": "u", "item": "i", "rating": "rating"})
    array = write(tmp_path / "log.json", '[{"u": 1, "i": 2}]\n')
    with pytest.raises(DataFormatError, match=r"log\.json: looks like a JSON array"):
        read_log(array, {"user": "u", "item": "i"})
    with pytest.raises(DataFormatError, match=r"log\.txt: cannot infer the log format"):
        read_log(write(tmp_path / "log.txt", "u,i\n1,2\n"), {"user": "u", "item": "i"})
    with pytest.raises(ValueError, match=r"unknown canonical field\(s\) \['time'\]"):
        read_log(csv_path, {"user": "uid", "item": "sku", "time": "ts"})
    with pytest.raises(ValueError, match=r"must map \['item'\]"):
        read_log(csv_path, {"user": "uid"})


def test_log_row_with_wrong_field_count_is_dropped(tmp_path):
    path = write(tmp_path / "events.csv", "uid,sku\n1,a\n1,b,extra\n1,c\n")
    data = read_log(path, {"user": "uid", "item": "sku"})
    assert as_dict(data) == {"1": ["a", "c"]}
    # The header is not a data line; line numbers are the file's.
    assert (data.report.lines_read, data.report.kept) == (3, 2)
    assert data.report.examples == [(3, "wrong number of fields", "1,b,extra")]
    with pytest.raises(DataFormatError, match=r"events\.csv, line 3: 3 field\(s\), expected 2"):
        read_log(path, {"user": "uid", "item": "sku"}, strict=True)


# -------------------------------------------------------- file-level errors
LINE_READERS = {
    "u.data": read_movielens_100k,
    "ratings.dat": read_movielens_1m,
    "seq.txt": read_user_item,
    "JD_sample": read_jd_sessions,
}


@pytest.mark.parametrize("name", sorted(LINE_READERS))
@pytest.mark.parametrize("text", ["", "\n  \n\n"], ids=["empty", "blank"])
def test_empty_file_names_it(tmp_path, name, text):
    path = write(tmp_path / name, text)
    for strict in (False, True):
        with pytest.raises(DataFormatError, match=re.escape(name) + r": the file is empty"):
            LINE_READERS[name](path, strict=strict)


def test_empty_log_names_it(tmp_path):
    with pytest.raises(DataFormatError, match=r"events\.csv: the file is empty"):
        read_log(write(tmp_path / "events.csv", ""), {"user": "u", "item": "i"})


@pytest.mark.parametrize(
    "name, text",
    [
        ("u.data", "1,10,5,100\n2,20,3,200\n"),  # CSV given to the TSV reader
        ("ratings.dat", "1\t10\t5\t100\n"),  # TSV given to the '::' reader
        ("seq.txt", "1,10\n2,20\n"),  # CSV given to the whitespace reader
    ],
)
def test_wrong_delimiter_names_the_file(tmp_path, name, text):
    path = write(tmp_path / name, text)
    no_line = re.escape(name) + r": none of its \d line.*Is the delimiter right"
    with pytest.raises(DataFormatError, match=no_line):
        LINE_READERS[name](path)
    with pytest.raises(DataFormatError, match=re.escape(name) + r", line 1: 1 field\(s\)"):
        LINE_READERS[name](path, strict=True)


def test_jd_file_with_no_valid_token(tmp_path):
    path = write(tmp_path / "JD_sample", "1,5,672,2,74 1,7,672,3,74\n")
    with pytest.raises(DataFormatError, match=r"JD_sample: none of its 1 line.*'\+'-separated"):
        read_jd_sessions(path)


def test_missing_file_names_it(tmp_path):
    for reader in LINE_READERS.values():
        with pytest.raises(FileNotFoundError, match=r"no_such_file"):
            reader(tmp_path / "no_such_file")
    with pytest.raises(FileNotFoundError, match=r"no_such_file\.csv"):
        read_log(tmp_path / "no_such_file.csv", {"user": "u", "item": "i"})
    # A folder without the expected file names the file it looked for.
    with pytest.raises(FileNotFoundError, match=r"u\.data"):
        read_movielens_100k(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"ratings\.dat"):
        read_movielens_1m(tmp_path)
    # A folder of logs (the pipeline's data root, which its run directories name): its one file,
    # and a clear error when it holds several.
    logs = tmp_path / "logs"
    logs.mkdir()
    write(logs / "part-0", "u1 i1\nu1 i2\n")
    (logs / ".hidden").write_text("x")
    assert read_user_item(logs).items[0].tolist() == ["i1", "i2"]
    write(logs / "part-1", "u2 i3\n")
    with pytest.raises(FileNotFoundError, match=r"is a folder of 2 files, not one file"):
        read_user_item(logs)


def test_byte_order_mark_is_ignored(tmp_path):
    path = tmp_path / "events.csv"
    path.write_bytes("\ufeffuid,sku\n1,a\n".encode("utf-8"))
    assert as_dict(read_log(path, {"user": "uid", "item": "sku"})) == {"1": ["a"]}


# ------------------------------------------------------------ real files
def test_real_movielens_100k():
    data = read_movielens_100k(ML_100K)
    assert data.num_users == 943
    assert data.num_interactions == 100000
    assert len(data.item_set()) == 1682
    assert data.report.kept == data.report.lines_read == 100000
    # Same order as a stable sort of the raw file by (time), per user.
    frame = pd.read_csv(ML_100K / "u.data", sep="\t", names=["user", "item", "rating", "time"], dtype=str)
    frame = frame.sort_values("time", key=lambda t: t.astype(int), kind="stable")
    for user in ("1", "196", "943"):
        expected = frame.loc[frame.user == user, "item"].tolist()
        assert as_dict(data)[user] == expected
    for times in data.side["timestamp"]:
        assert np.all(np.diff(times) >= 0)


@pytest.mark.skipif(not JD_MICRO.is_dir(), reason=f"JD micro-behaviour samples not found at {JD_MICRO}")
def test_real_jd_sample():
    path = JD_MICRO / "JD_Computers_sample"
    data = read_jd_sessions(path, strict=True)
    lines = path.read_text().splitlines()
    assert data.num_users == len(lines) == 1000
    assert data.user_ids[:3] == ["JD_Computers_sample:1", "JD_Computers_sample:2", "JD_Computers_sample:3"]
    assert data.num_interactions == sum(len(line.split()) for line in lines)
    assert data.side_fields == ("behavior", "category", "time_interval", "dwell_time")
    # The first micro-behaviour of the file, field by field.
    sku, behavior, category, interval, dwell = lines[0].split()[0].split("+")
    first = (data.items[0][0], data.side["behavior"][0][0], data.side["category"][0][0])
    assert first == (sku, behavior, category)
    assert data.side["time_interval"][0][0] == float(interval)
    assert data.side["dwell_time"][0][0] == float(dwell)
    assert set(np.concatenate(data.side["behavior"])) <= {str(b) for b in range(1, 11)}


# ------------------------------------------------------- vectorised CSV / TSV
LOG_COLUMNS = {"user": "user", "item": "item", "timestamp": "timestamp", "behavior": "behavior",
               "category": "category", "time_interval": "time_interval", "dwell_time": "dwell_time"}


def _delimited_both_ways(path, columns, fmt, header=True):
    """(the vectorised reading or None, the line reader's) of a CSV/TSV file."""
    from tfrec_dyn.data.readers import _delimited_layout, _first_line, _read_delimited_columns, _read_delimited_lines

    first = _first_line(path)
    fast = _read_delimited_columns(path, _delimited_layout(first, columns, fmt, None, header, str(path)), header)
    return fast, _read_delimited_lines(path, first, columns, fmt, None, header, False)


@pytest.mark.parametrize("fmt", ["csv", "tsv"])
def test_delimited_vectorised_reader_equals_the_line_reader(tmp_path, fmt):
    from tfrec_dyn.data.synthetic import LogSpec, generate_log

    path = tmp_path / f"log.{fmt}"
    generate_log(LogSpec(num_users=200, num_items=300, mean_length=6, seed=2)).write(str(path), fmt)
    sep = "," if fmt == "csv" else "\t"
    lines = path.read_text().splitlines()
    lines[0] += f"{sep}note"  # an unmapped column, kept raw
    spellings = [" 7", "1e-3", ".5", "3.", "+2", "-0", "1E2 "]  # `float` and pandas take them all
    for i in range(1, len(lines)):
        if i % 11 == 0:  # a spelt-out dwell time
            lines[i] = sep.join(lines[i].split(sep)[:-1] + [spellings[i % len(spellings)]])
        note = '"a, ""quoted"" note"' if fmt == "csv" else ' raw "text" '
        lines[i] += f"{sep}{note if i % 7 else ''}"
    path.write_text("\r\n".join(lines) + "\r\n")
    fast, slow = _delimited_both_ways(path, LOG_COLUMNS, fmt)
    assert fast is not None  # the file takes the vectorised path
    _same_interactions(fast, slow)
    assert fast.report.kept == len(lines) - 1 and not fast.report.dropped_total
    # ISO 8601 timestamps (naive = UTC, offsets, fractions) give the line reader's seconds too.
    stamps = ["2024-03-01T10:00:00", "2024-03-01 10:00:00.250+02:00", "2024-03-01T09:59:59Z", "2024-03-01"]
    iso = tmp_path / f"iso.{fmt}"
    iso.write_text("\n".join([sep.join(["user", "item", "timestamp"])] +
                             [sep.join(["u1", f"i{n}", stamp]) for n, stamp in enumerate(stamps)]) + "\n")
    fast, slow = _delimited_both_ways(iso, {"user": "user", "item": "item", "timestamp": "timestamp"}, fmt)
    assert fast is not None
    _same_interactions(fast, slow)
    assert fast.items[0].tolist() == ["i3", "i1", "i2", "i0"]  # ordered by time


@pytest.mark.parametrize("bad", ["", "u1,i1", "u1,i1,5,extra", "u1, ,5", "u1,i1,nan", "u1,i1,0x10", "u1,i1,1_0", "u1,i1,inf",
                                 '"u1\nstill u1",i1,5', "ü,i1,5", "u1,i1,2024-03-01T10:00:00.1234567"])
def test_delimited_file_with_any_odd_line_is_read_line_by_line(tmp_path, bad):
    path = write(tmp_path / "log.csv", f"user,item,dwell\nu1,i0,4\n{bad}\nu2,i2,6\n")
    columns = {"user": "user", "item": "item", "dwell_time": "dwell"}
    fast, slow = _delimited_both_ways(path, columns, "csv")
    assert fast is None
    assert read_log(path, columns).report == slow.report and slow.report.kept >= 2


def _jsonl_both_ways(path, columns):
    """(the vectorised reading or None, the line reader's) of a JSON-lines file."""
    from tfrec_dyn.data.readers import _check_columns, _read_jsonl_columns, _read_jsonl_lines

    return _read_jsonl_columns(path, _check_columns(columns, named=True)), _read_jsonl_lines(path, columns, False)


def test_jsonl_vectorised_reader_equals_the_line_reader(tmp_path):
    from tfrec_dyn.data.synthetic import LogSpec, generate_log

    path = tmp_path / "log.jsonl"
    generate_log(LogSpec(num_users=200, num_items=300, mean_length=6, seed=2)).write(str(path), "jsonl")
    records = [json.loads(line) for line in path.read_text().splitlines()]
    for n, record in enumerate(records):  # unmapped keys of every JSON kind, some records without them
        if n % 3:
            record["note"] = f" note {n % 5} "
        record["count"] = n if n % 4 else None
        if n % 5 == 0:
            record["seen"] = n % 2 == 0
        record["score"] = n + 0.25
    path.write_text("".join(json.dumps(record) + ("\r\n" if n % 2 else "\n") for n, record in enumerate(records)))
    fast, slow = _jsonl_both_ways(path, LOG_COLUMNS)
    assert fast is not None  # the file takes the vectorised path
    _same_interactions(fast, slow)
    assert "note" in fast.side and fast.report.kept == len(records)
    # Integer ids and timestamps are the line reader's text and seconds too.
    ints = tmp_path / "ints.jsonl"
    ints.write_text("".join(json.dumps({"user": n % 3, "item": 10 ** 12 + n, "timestamp": 100 - n}) + "\n"
                            for n in range(9)))
    columns = {"user": "user", "item": "item", "timestamp": "timestamp"}
    fast, slow = _jsonl_both_ways(ints, columns)
    assert fast is not None
    _same_interactions(fast, slow)


@pytest.mark.parametrize("bad", ["", "[1]", '"text"', "{", '{"item": "i1", "dwell": 5}', '{"user": null, "item": "i1"}',
                                 '{"user": 1.5, "item": "i1"}', '{"user": true, "item": "i1"}',
                                 '{"user": "u1", "item": "i1", "dwell": "5"}', '{"user": "u1", "item": " "}',
                                 '{"user": "u1", "item": "i1", "dwell": NaN}', '{"user": "u1", "item": "i1", "x": [1]}',
                                 '{"user": "u1", "item": "i1", "x": 2}', '{"user": "u1", "user": "u2", "item": "i1"}',
                                 '{"user": 123456789012345678901, "item": "i1"}', '{"user": "ü", "item": "i1"}'])
def test_jsonl_file_with_any_odd_line_is_read_line_by_line(tmp_path, bad):
    path = write(tmp_path / "log.jsonl", '{"user": "u1", "item": "i0", "dwell": 4, "x": 1.5}\n' + bad + "\n"
                 + '{"user": "u2", "item": "i2", "dwell": 6.5, "x": 2.5}\n')
    columns = {"user": "user", "item": "item", "dwell_time": "dwell"}
    fast, slow = _jsonl_both_ways(path, columns)
    assert fast is None
    _same_interactions(read_log(path, columns), slow)


@pytest.mark.parametrize("text", [
    "user,item,note\nu1,i1,5,7\nu2,i2,6,8\nu3,i3,9\n",  # a field too many (pandas' index inference)
    "user,item,note\nu1,i1,5,7\nu2,i2,6\n",  # ... on the first line only
    'user,item,note\nu1,i1,"x,y"\nu2,i2,"z",w\n',  # ... beside a quoted delimiter
    'user,item,note\nu1,i1,TV 55" black, 65" silver\nu2,i2,radio\n',  # quotes inside a field: text
    'user,item,note\nu0,i0,z"\nu1,"a,b,c"\n',
    'user,item,note\nu1,i1,x\ry\nu2,i2,z\n',  # a lone carriage return (csv refuses the line)
    "user,item,note\nu1,i1,x\nu2,i2\n",  # a field too few, in a column of strings
    *(f"user,item,timestamp\nu1,i1,2024-03-01T10:00\nu2,i2,{stamp}\n" for stamp in [
        "2024-02-30", "2024-03-01T24:00", "2024-03-01T10:00:60", "2024-03-01Z", "2024-03-01+02:00",
        "1600-03-01T10:00", "2300-03-01T10:00"]),  # not a date, or one pandas and Python may read apart
])
def test_delimited_file_the_vectorised_reader_cannot_take_exactly_is_read_line_by_line(tmp_path, text):
    path = write(tmp_path / "log.csv", text)
    columns = {name: name for name in text.split("\n", 1)[0].split(",") if name != "note"}
    fast, slow = _delimited_both_ways(path, columns, "csv")
    assert fast is None
    _same_interactions(read_log(path, columns), slow)


def test_delimited_iso_times_with_and_without_offsets_and_long_delimiters(tmp_path):
    # pandas alone would read the naive time in the offset of the one before it.
    path = write(tmp_path / "log.csv", "user,item,ts\nu1,i1,2024-03-01T09:00:00+02:00\nu1,i2,2024-03-01T10:00:00\n")
    fast, slow = _delimited_both_ways(path, {"user": "user", "item": "item", "timestamp": "ts"}, "csv")
    assert fast is not None
    _same_interactions(fast, slow)
    np.testing.assert_array_equal(fast.side["timestamp"][0], [1709276400.0, 1709287200.0])
    # A delimiter of two characters: the line reader's.
    path = write(tmp_path / "log.tsv", "user::item::note\nu1::i1::x\n")
    assert read_log(path, {"user": "user", "item": "item"}, delimiter="::").side["note"][0].tolist() == ["x"]


@pytest.mark.parametrize("text", [b"", b"u1 i1", b"u1 i1\n", b"u1 i1\n\n  \nu2  i2 x\r\n", b"\n", b" a\tb \x0bc\n\nd"])
def test_the_first_pass_counts_tokens_per_line_as_a_direct_sum(text):
    from tfrec_dyn.data.readers import _plain_text_layout

    codes, space, token_start, line_starts, counts = _plain_text_layout(text)
    expected = [len(line.split()) for line in text.split(b"\n")]
    if text.endswith(b"\n") or not text:
        expected = expected[:-1]  # no line after a final newline
    assert counts.tolist() == expected and line_starts.tolist() == [0, *np.flatnonzero(codes == 10) + 1][:len(expected)]
    assert token_start.sum() == len(text.split()) and space.sum() == len(text) - len(b"".join(text.split()))
    assert _plain_text_layout(b"caf\xc3\xa9 i1\n") is None
