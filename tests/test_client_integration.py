"""client.check_can_write and client.describe_failure against real nodes: OpenSearch plain and
secured, and Elasticsearch."""

from __future__ import annotations

import pytest
from opensearchpy.exceptions import AuthorizationException

from bridge.client import PermissionDenied, check_can_write, connect, describe_failure

pytestmark = pytest.mark.integration


def _state(client, index):
    client.indices.refresh(index=index)
    return (
        client.indices.get_settings(index=index),
        client.indices.get_mapping(index=index),
        client.count(index=index)["count"],
    )


@pytest.mark.parametrize("node", ["plain", "secured", "elasticsearch"])
def test_check_can_write_allows_a_writer_and_changes_nothing(node, request):
    if node == "plain":
        client, index = request.getfixturevalue("os_client"), request.getfixturevalue("index_name")
    elif node == "secured":
        client = connect(request.getfixturevalue("secure_settings"))
        index = request.getfixturevalue("secure_index")
    else:  # the same probes through elasticsearch-py
        client, index = request.getfixturevalue("es_client"), request.getfixturevalue("es_index")
    check_can_write(client, index)  # missing: may create it
    assert not client.indices.exists(index=index)
    client.indices.create(index=index, body={"mappings": {"properties": {"t": {"type": "text"}}}})
    client.index(index=index, id="1", body={"t": "kept"}, refresh=True)
    before = _state(client, index)
    check_can_write(client, index)  # existing: may write to it
    assert _state(client, index) == before


def test_check_can_write_refuses_the_reader_by_name(reader_settings, secure_index):
    with pytest.raises(PermissionDenied) as err:
        check_can_write(connect(reader_settings), secure_index)
    assert err.value.message.startswith(
        f"User 'reader' may not change the settings of index {secure_index!r} "
        "(security_exception: no permissions for [indices:admin/settings/update]"
    )
    assert reader_settings.password not in err.value.message


def test_describe_failure_of_a_real_403_names_the_user_not_the_password(
    reader_settings, secure_index
):
    with pytest.raises(AuthorizationException) as raised:
        connect(reader_settings).indices.create(index=secure_index)
    error = describe_failure(raised.value, reader_settings)
    assert isinstance(error, PermissionDenied)
    assert error.message.startswith(
        f"User 'reader' may not do this on {reader_settings.url} (security_exception: no "
        "permissions for [indices:admin/create]"
    )
    assert reader_settings.password not in error.message
