"""A one-class analysis of a real grouped stream over HTTP transfers what the format promises: the
headers and indexes, then the person groups' units, fetched in about one request per frame."""

from __future__ import annotations

import io

import pytest
from test_remote import _Server

import ssb

pytestmark = [pytest.mark.teacher, pytest.mark.media, pytest.mark.usefixtures("torch_one_thread")]


@pytest.fixture(scope="module")
def grouped():
    from ssb.pipeline import Models, encode
    from ssb.resources import vtest_path

    models = Models()
    buf = io.BytesIO()
    encode(vtest_path(), buf, frames=range(620, 623), groups="auto", quality=0, models=models)
    return buf.getvalue(), models


def test_person_query_over_http_transfers_the_person_units_only(grouped):
    import threading

    from ssb.pipeline import analyze

    data, models = grouped
    srv = _Server()
    srv.files = {"/g.ssb": data}
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        remote = analyze(srv.url("/g.ssb"), tasks=["detection"], classes=["person"], models=models)
        sent, requests = srv.sent, srv.requests
    finally:
        srv.shutdown()
        srv.server_close()
    local = analyze(data, tasks=["detection"], classes=["person"], models=models)
    with ssb.open(data) as bs:
        opened = bs.bytes_read
        sel = bs.select(classes=["person"], include_shared=False)
        people = sum(u.size for u in sel.units)
    for a, b in zip(remote.frames, local.frames):
        assert a.predictions["detection"]["boxes"].tolist() == b.predictions["detection"]["boxes"].tolist()
    assert people > 0 and remote.bytes_read == local.bytes_read
    # opening reads ahead a little past each index; beyond that, only the person units
    assert sent <= opened + people + 3 * 64 * 1024 and sent < 0.7 * len(data), (sent, opened, people, len(data))
    assert requests <= 2 + 2 * len(remote.frames) + 4

