"""Version names sort as versions: v5.10 is newer than v5.9."""

from __future__ import annotations

import pytest

from sandbox.catalog import newest_version, version_key


@pytest.mark.parametrize(
    ("versions", "newest"),
    [
        (["v5.9", "v5.10"], "v5.10"),
        (["v4.3", "v5.0", "v10.0", "v9.2"], "v10.0"),
        (["signals/v1.0", "signals/v2.0"], "signals/v2.0"),
        (["v5.2"], "v5.2"),
        ([], None),
    ],
)
def test_the_newest_version_is_compared_by_its_numbers(versions, newest):
    assert newest_version(versions) == newest
    assert newest_version(reversed(versions)) == newest


def test_version_keys_order_numerically():
    assert sorted(["v5.10", "v5.2", "v5.9", "v4.3"], key=version_key) == [
        "v4.3",
        "v5.2",
        "v5.9",
        "v5.10",
    ]
