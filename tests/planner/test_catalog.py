"""Catalog: the data load, founding and today's types are there, errors name close types and regions."""

from __future__ import annotations

import pytest

from cryocloud.errors import CryocloudError
from cryocloud.planner.catalog import Catalog, live_spot_prices

FOUNDING = ("t2", "m4", "c4", "r4", "x1", "d2", "g3", "p2", "p3")
TODAY = ("g4dn", "g5", "g6", "g6e", "p4d", "p5", "c6i", "c7i", "m6i", "m7i", "r6i", "i4i")


@pytest.fixture(scope="module")
def cat() -> Catalog:
    return Catalog()


def test_families_covered(cat: Catalog) -> None:
    families = {t.family for t in cat}
    assert set(FOUNDING) | set(TODAY) <= families


def test_gpu_facts(cat: Catalog) -> None:
    g5 = cat.get("g5.xlarge")
    assert (g5.gpus, g5.gpu_model, g5.gpu_memory_gib, g5.vcpus) == (1, "A10G", 24, 4)
    assert g5.local_disk_gb > 0 and g5.network_gbps > 0
    assert cat.get("p2.8xlarge").gpus == 8 and cat.get("p2.8xlarge").retired
    assert cat.on_demand("p2.16xlarge", "us-east-1") == 14.40  # the founding talk's price


def test_unknown_type_suggests_close_names(cat: Catalog) -> None:
    with pytest.raises(CryocloudError) as e:
        cat.get("g5.xlarg")
    assert "g5.xlarge" in e.value.hint


def test_region_without_type(cat: Catalog) -> None:
    with pytest.raises(CryocloudError) as e:
        cat.on_demand("g6.xlarge", "eu-west-1")
    assert "not offered in eu-west-1" in e.value.message and "us-east-1" in e.value.hint
    with pytest.raises(CryocloudError) as e2:
        cat.on_demand("g5.xlarge", "us-east-7")
    assert "us-east-1" in e2.value.hint


def test_spot_snapshot_cheapest_first_and_fallback(cat: Catalog) -> None:
    quotes = cat.spot("g5.xlarge", "us-east-1")
    assert quotes[0].usd_per_hour == pytest.approx(0.397) and quotes[0].zone == "use1-az2"
    assert [q.usd_per_hour for q in quotes] == sorted(q.usd_per_hour for q in quotes)
    # t2.nano has no spot price in the snapshot: the family's discount stands in, labelled as an estimate
    est = cat.spot("t2.nano", "us-east-1")
    assert est[0].source.startswith("estimate") and 0 < est[0].usd_per_hour < cat.on_demand("t2.nano", "us-east-1")


class FakeEC2:
    def describe_spot_price_history(self, **kw: object) -> dict[str, object]:
        return {"SpotPriceHistory": [
            {"AvailabilityZone": "us-east-1a", "SpotPrice": "0.50", "Timestamp": 1},
            {"AvailabilityZone": "us-east-1a", "SpotPrice": "0.41", "Timestamp": 2},
            {"AvailabilityZone": "us-east-1b", "SpotPrice": "0.45", "Timestamp": 1},
        ]}


def test_live_spot_latest_per_zone() -> None:
    quotes = live_spot_prices("g5.xlarge", "us-east-1", client=FakeEC2())
    assert [(q.zone, q.usd_per_hour) for q in quotes] == [("us-east-1a", 0.41), ("us-east-1b", 0.45)]
    assert quotes[0].source == "DescribeSpotPriceHistory"
