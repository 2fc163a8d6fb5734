"""The embedded server's multipart/form-data reader (connectors/chserver/form.py)."""

from __future__ import annotations

import pytest
from urllib3.filepost import encode_multipart_formdata

from connectors.chserver.form import FormError, boundary_of, parse_form

CT = "multipart/form-data; boundary=XyZ"


def _form(*parts: bytes, preamble: bytes = b"", epilogue: bytes = b"") -> bytes:
    body = b"".join(b"--XyZ\r\n" + p + b"\r\n" for p in parts)
    return preamble + body + b"--XyZ--\r\n" + epilogue


def test_reads_what_clickhouse_connect_sends() -> None:
    """The form urllib3 builds for clickhouse-connect's external data, byte for byte."""
    data = b"1\tx\n2\ty\r\n--not-the-boundary\r\n\x00\xff" * 1000
    body, content_type = encode_multipart_formdata(
        {
            "query": "SELECT count() FROM ids",
            "param_v": "héllo",
            "ids": ("ids", data),
            "ids_structure": "id UInt32, s String",
        }
    )
    fields, files = parse_form(content_type, body)
    assert fields == [
        ("query", "SELECT count() FROM ids"),
        ("param_v", "héllo"),
        ("ids_structure", "id UInt32, s String"),
    ]
    assert files == [("ids", data)]
    assert parse_form(content_type, bytearray(body)) == (fields, files)  # as the server reads


def test_file_bytes_are_exact_including_line_breaks_and_boundary_lookalikes() -> None:
    # a delimiter is CRLF--boundary followed by "--" or a line break: anything else is data
    for data in (b"\r\n--XyZ-not-a-delimiter\r\n\r\n", b"a--XyZ\r\nb", b"\r\n--XyZ x\r\n", b""):
        part = b'Content-Disposition: form-data; name="t"; filename="t"\r\n\r\n' + data
        assert parse_form(CT, _form(part)) == ([], [("t", data)])


def test_preamble_epilogue_empty_file_and_headerless_part_rules() -> None:
    body = _form(
        b'Content-Disposition: form-data; name="q"\r\n\r\nSELECT 1',
        b'Content-Disposition: form-data; name="e"; filename=""\r\n\r\n',
        preamble=b"ignored preamble\r\n",
        epilogue=b"ignored epilogue",
    )
    fields, files = parse_form(CT, body)
    assert fields == [("q", "SELECT 1")]
    assert files == [("e", b"")]
    # a boundary followed by other text is preamble, not a delimiter: here an empty form
    assert parse_form(CT, b"--XyZjunk\r\n\r\nx\r\n--XyZ--") == ([], [])


def test_quoted_boundary_charset_and_rfc2231_names() -> None:
    ct = 'multipart/form-data; boundary="XyZ"'
    body = _form(
        b"Content-Disposition: form-data; name*=UTF-8''n%C3%A1me\r\n"
        b"Content-Type: text/plain; charset=latin-1\r\n\r\ncaf\xe9"
    )
    assert parse_form(ct, body) == ([("náme", "café")], [])
    assert boundary_of(ct) == "XyZ"


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        ("multipart/form-data", b"--XyZ--\r\n", "boundary"),
        (CT, b"no delimiter at all", "without its boundary"),
        (CT, b'--XyZ\r\nContent-Disposition: form-data; name="q"\r\n\r\nSELECT 1', "not closed"),
        (CT, b'--XyZ\r\nContent-Disposition: form-data; name="q"\r\n\r\nx\r\n--XyZz', "not closed"),
        (CT, b'--XyZ\r\nContent-Disposition: form-data; name="q"', "blank line"),
        (CT, _form(b"Content-Disposition: form-data\r\n\r\nx"), "unnamed"),
        (CT, _form(b'Content-Disposition: attachment; name="q"\r\n\r\nx'), "not form-data"),
        (
            CT,
            _form(
                b'Content-Disposition: form-data; name="t"; filename="t"\r\n'
                b"Content-Transfer-Encoding: base64\r\n\r\neA=="
            ),
            "Content-Transfer-Encoding",
        ),
        (
            CT,
            _form(
                b'Content-Disposition: form-data; name="n"\r\n'
                b"Content-Type: multipart/mixed; boundary=in\r\n\r\n--in--"
            ),
            "nested",
        ),
        (CT, _form(b'Content-Disposition: form-data; name="q"\r\n\r\n\xff'), "not valid utf-8"),
    ],
)
def test_malformed_forms_are_refused_with_the_reason(
    content_type: str, body: bytes, message: str
) -> None:
    with pytest.raises(FormError, match=message):
        parse_form(content_type, body)
