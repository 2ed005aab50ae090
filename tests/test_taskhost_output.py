import io

from minijet.formats.textinput import SplitReader
from minijet.formats.textoutput import TextOutputWriter


def test_key_tab_value_lines():
    f = io.BytesIO()
    writer = TextOutputWriter(f, buffer_records=2)
    writer.write("the", 3)
    writer.write_all([("a b", 1.5), (("t", 1), [1, 2]), ("alone", None)])
    writer.flush()
    assert f.getvalue() == b"the\t3\na b\t1.5\n('t', 1)\t[1, 2]\nalone\n"
    assert writer.records == 4 and writer.bytes == len(f.getvalue())


def test_buffered_until_flush():
    f = io.BytesIO()
    writer = TextOutputWriter(f, buffer_records=100)
    writer.write("k", "v")
    assert f.getvalue() == b""
    writer.flush()
    assert f.getvalue() == b"k\tv\n"


def test_undecodable_input_bytes_survive_to_the_output():
    data = b"caf\xc3\xa9\t\xff\xfe\xe2\x82\n"
    line = next(iter(SplitReader(io.BytesIO(data), 0, len(data))))[1]
    key, value = line.split("\t")
    f = io.BytesIO()
    writer = TextOutputWriter(f)
    writer.write(key, value)
    writer.flush()
    assert f.getvalue() == data


def test_other_lone_surrogates_do_not_fail_the_task():
    f = io.BytesIO()
    writer = TextOutputWriter(f)
    writer.write("x\ud800y", "\udc80")
    writer.flush()
    assert f.getvalue() == b"x\xed\xa0\x80y\t\x80\n"


def test_one_call_with_a_long_stream_flushes_as_it_goes():
    class Recording(io.BytesIO):
        writes = 0

        def write(self, data):
            Recording.writes += 1
            return super().write(data)

    f = Recording()
    writer = TextOutputWriter(f, buffer_records=100)
    writer.write_all((i, i * i) for i in range(1050))
    assert Recording.writes == 10
    writer.flush()
    assert f.getvalue().decode().splitlines() == [f"{i}\t{i * i}" for i in range(1050)]
    assert writer.records == 1050
