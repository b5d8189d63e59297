"""Billing rules of BILLING.md, tested as pure functions on literal records."""

from dataclasses import replace
from datetime import datetime, timezone
from fractions import Fraction

import pytest

from hub.mappings import Addon, Contract, Mappings, Tier
from hub.periods import month
from hub.reconcile import Bill, apply_minimum, bill_devices, device_weight, why_not_counted
from hub.records import BillingLine, Device

UTC = timezone.utc
OCT = month(2026, 10, "UTC")


def dt(*a):
    return datetime(*a, tzinfo=UTC)


def mappings(**kw):
    silver = Tier("silver", "Silver", {"workstation": 10000, "server": 20000}, frozenset({"monitoring"}))
    gold = Tier("gold", "Gold", {"workstation": 12000, "server": 24000}, frozenset({"monitoring", "remote"}), "silver")
    plat = Tier("platinum", "Platinum", {"workstation": 18000, "server": 36000},
                frozenset({"monitoring", "remote", "backup"}), "gold")
    addons = {"backup": Addon("backup", "Cloud backup", {"workstation": 1500, "server": 4500}, "backup"),
              "mail": Addon("mail", "Email security", {"*": 400}, "mail", frozenset({"workstation"})),
              "netmon": Addon("netmon", "Network monitoring", {"network": 500}, None, frozenset({"network"}))}
    classes = {"ninjaone": {"WINDOWS_WORKSTATION": "workstation", "WINDOWS_SERVER": "server",
                            "NMS_PRINTER": "printer", "NMS_SWITCH": "network"}}
    return Mappings("EUR", {"silver": silver, "gold": gold, "platinum": plat}, addons, classes, {}, **kw)


def contract(tier="gold", addons=(), minimum=0, proration=False):
    return Contract("acme", "Acme", tier, "EUR", {"ninjaone": "1"}, tuple(addons), minimum, proration)


def dev(i, cls="WINDOWS_WORKSTATION", approval="approved", created=dt(2026, 1, 1), seen=dt(2026, 10, 15)):
    return Device("ninjaone", str(i), "1", f"PC-{i}", cls, approval, created, seen)


@pytest.mark.parametrize("device, reason", [
    (dev(1), None),
    (dev(2, approval="pending"), "not approved in the RMM (pending)"),
    # Decommissioned counts like a device that disappears: for the periods in which it was last seen.
    (dev(3, approval="decommissioned"), None),
    (dev(9, approval="decommissioned", seen=dt(2026, 9, 10)), "not seen during the period (last contact 2026-09-10)"),
    (dev(10, approval="staged"), "not approved in the RMM (staged)"),
    (dev(11, approval="rejected"), "not approved in the RMM (rejected)"),
    (dev(4, created=dt(2026, 11, 1)), "created after the period"),
    (dev(5, created=dt(2026, 10, 31, 23, 59)), None),
    (dev(6, seen=dt(2026, 9, 30, 23, 59)), "not seen during the period (last contact 2026-09-30)"),
    (dev(7, seen=dt(2026, 10, 1)), None),
    (dev(8, seen=None), "never seen by the RMM"),
])
def test_which_devices_count(device, reason):
    assert why_not_counted(device, OCT) == reason


def test_period_boundaries_follow_the_msp_time_zone():
    paris = month(2026, 10, "Europe/Paris")
    assert paris.start == dt(2026, 9, 30, 22, 0) and paris.end == dt(2026, 10, 31, 23, 0)
    late_evening = dev(1, created=dt(2026, 10, 31, 23, 30))   # 1 November 00:30 in Paris
    assert why_not_counted(late_evening, paris) == "created after the period"
    assert why_not_counted(late_evening, OCT) is None


def test_tier_lines_count_devices_per_class_and_explain_themselves():
    devices = [dev(1), dev(2), dev(3, "WINDOWS_SERVER"), dev(4, approval="pending"), dev(5, "NMS_PRINTER")]
    bill = bill_devices(contract(), mappings(), devices, OCT)
    assert not bill.errors
    by_code = {l.code: l for l in bill.lines}
    assert set(by_code) == {"tier:gold:workstation", "tier:gold:server"}
    ws = by_code["tier:gold:workstation"]
    assert (ws.quantity, ws.unit_amount, ws.amount) == ("2", 12000, 24000)
    assert [d["name"] for d in ws.items] == ["PC-1", "PC-2"]
    assert "Gold (includes Silver)" in ws.rule and "120.00 EUR" in ws.rule
    assert by_code["tier:gold:server"].amount == 24000
    assert bill.total == 48000
    reasons = {e.source_id: e.reason for e in bill.excluded}
    assert reasons == {"4": "not approved in the RMM (pending)", "5": "class 'printer' is not billed by tier Gold"}


def test_unmapped_node_class_is_an_error_naming_the_device_and_the_fix_when_unlisted_is_error():
    bill = bill_devices(contract(), mappings(unlisted="error"), [dev(1), dev(9, "ANDROID")], OCT)
    assert len(bill.errors) == 1 and bill.notes == ()
    assert "'PC-9'" in bill.errors[0] and "ANDROID" in bill.errors[0] and "device_classes.toml" in bill.errors[0]


def test_unmapped_node_class_is_not_billed_by_default_with_one_note_per_class():
    devices = [dev(1), dev(2, "CLOUD_MONITOR_TARGET"), dev(3, "ANDROID"), dev(4, "CLOUD_MONITOR_TARGET"),
               dev(5, "CLOUD_MONITOR_TARGET"), dev(6, "CLOUD_MONITOR_TARGET"), dev(7, "CLOUD_MONITOR_TARGET", seen=None)]
    bill = bill_devices(contract(), mappings(), devices, OCT)
    assert bill.errors == ()
    assert [(l.code, l.quantity) for l in bill.lines] == [("tier:gold:workstation", "1")]
    # The one not seen in the period is excluded for that reason, like any device; the others are
    # counted once in their class's note, not one exclusion each.
    assert [(e.source_id, e.reason) for e in bill.excluded] == [("7", "never seen by the RMM")]
    assert bill.notes == (
        "ninjaone node class 'ANDROID' is named by no mapping: 1 device(s) not billed ('PC-3'); add "
        "ANDROID = \"workstation\" (or another class) under [ninjaone] of mappings/device_classes.toml to bill it",
        "ninjaone node class 'CLOUD_MONITOR_TARGET' is named by no mapping: 4 device(s) not billed ('PC-2', 'PC-4', "
        "'PC-5' and 1 more); add CLOUD_MONITOR_TARGET = \"workstation\" (or another class) under [ninjaone] of "
        "mappings/device_classes.toml to bill it")


def test_unmapped_node_class_not_billed_does_not_reach_an_addon():
    bill = bill_devices(contract(addons=["mail", "backup"]), mappings(), [dev(1), dev(2, "CLOUD_MONITOR_TARGET")], OCT)
    assert bill.errors == ()
    assert sorted((l.code, l.quantity) for l in bill.lines) == [
        ("addon:backup:workstation", "1"), ("addon:mail:workstation", "1"), ("tier:gold:workstation", "1")]
    assert [i["name"] for l in bill.lines for i in l.items] == ["PC-1", "PC-1", "PC-1"]


def test_addon_counts_devices_billed_under_the_tier():
    bill = bill_devices(contract(addons=["backup"]), mappings(),
                        [dev(1), dev(2, "WINDOWS_SERVER"), dev(3, "NMS_PRINTER")], OCT)
    by_code = {l.code: l for l in bill.lines}
    assert by_code["addon:backup:workstation"].amount == 1500
    assert by_code["addon:backup:server"].amount == 4500
    assert "addon:backup:printer" not in by_code


def test_addon_naming_classes_counts_those_classes_even_if_the_tier_does_not_bill_them():
    bill = bill_devices(contract(addons=["netmon", "mail"]), mappings(),
                        [dev(1), dev(2, "NMS_SWITCH"), dev(3, "WINDOWS_SERVER")], OCT)
    by_code = {l.code: l for l in bill.lines}
    assert by_code["addon:netmon:network"].amount == 500
    assert by_code["addon:mail:workstation"].quantity == "1"
    assert "addon:mail:server" not in by_code


def test_addon_included_in_a_higher_tier_is_not_billed_again():
    bill = bill_devices(contract("platinum", addons=["backup"]), mappings(), [dev(1)], OCT)
    assert [l.code for l in bill.lines] == ["tier:platinum:workstation"]
    assert any("included in tier Platinum" in n for n in bill.notes)


@pytest.mark.parametrize("created, weight", [
    (dt(2026, 9, 3), Fraction(1)),
    (dt(2026, 10, 1), Fraction(1)),
    (dt(2026, 10, 31), Fraction(1, 31)),
    (dt(2026, 10, 17, 8), Fraction(15, 31)),
])
def test_proration_counts_days_from_creation_to_period_end_inclusive(created, weight):
    assert device_weight(dev(1, created=created), OCT, proration=True) == weight
    assert device_weight(dev(1, created=created), OCT, proration=False) == 1


def test_prorated_quantity_keeps_its_fraction_until_rounding_once_per_line():
    # 3 devices created on the 17th: 3 * 15/31 * 120.00 = 174.193548... -> 174.19
    devices = [dev(i, created=dt(2026, 10, 17)) for i in range(3)]
    bill = bill_devices(contract(proration=True), mappings(), devices, OCT)
    (line,) = bill.lines
    assert line.quantity == "1.4516" and line.amount == 17419
    assert "prorated" in line.rule


def test_rounding_is_half_up_after_quantity_times_price():
    m = mappings()
    m.tiers["odd"] = Tier("odd", "Odd", {"workstation": 1}, frozenset())
    # 1 device created on the 16th of a 31-day month: 16/31 * 1 cent = 0.516 -> 1 cent
    bill = bill_devices(contract("odd", proration=True), m, [dev(1, created=dt(2026, 10, 16))], OCT)
    assert bill.lines[0].amount == 1


def test_monthly_minimum_adds_an_explained_top_up_line():
    bill = apply_minimum(bill_devices(contract(minimum=50000), mappings(), [dev(1)], OCT), contract(minimum=50000))
    assert bill.total == 50000
    top = bill.lines[-1]
    assert top.code == "minimum" and top.amount == 50000 - 12000 and "500.00 EUR" in top.rule
    unchanged = bill_devices(contract(minimum=100), mappings(), [dev(1)], OCT)
    assert apply_minimum(unchanged, contract(minimum=100)) is unchanged


# --- a bad record holds its client's bill, never the run, and never disappears ---


@pytest.mark.parametrize("unlisted", ["not_billed", "error"])
@pytest.mark.parametrize("node_class", [None, "", "  "])
def test_device_with_no_node_class_is_an_error_naming_it(node_class, unlisted):
    bill = bill_devices(contract(), mappings(unlisted=unlisted), [dev(1), dev(9, node_class)], OCT)
    assert [(l.code, l.quantity) for l in bill.lines] == [("tier:gold:workstation", "1")]
    assert bill.excluded == ()
    (error,) = bill.errors
    assert error == (f"device 'PC-9' (ninjaone id 9) has no node class ({node_class!r}), so its billable class "
                     f"cannot be decided; check the device in ninjaone and the node class the ninjaone plugin "
                     f"reads, then sync again. It is not billed")


def test_unmapped_node_class_error_names_the_device_the_class_and_the_line_to_add():
    bill = bill_devices(contract(), mappings(unlisted="error"), [dev(1), dev(9, "ANDROID")], OCT)
    assert bill.excluded == () and [l.quantity for l in bill.lines] == ["1"]
    assert bill.errors == ("device 'PC-9' (ninjaone id 9) has node class 'ANDROID', which mappings/device_classes.toml "
                           "does not map; add ANDROID = \"workstation\" (or another class, e.g. \"printer\" to list it "
                           "as not billed) under [ninjaone]. It is not billed",)


def test_device_of_a_source_with_no_section_is_an_error_saying_so():
    other = Device("datto", "5", "1", "NAS-5", "NAS", "approved", dt(2026, 1, 1), dt(2026, 10, 15))
    (error,) = bill_devices(contract(), mappings(unlisted="error"), [dev(1), other], OCT).errors
    assert error.startswith("device 'NAS-5' (datto id 5) has node class 'NAS'")
    assert "in a new [datto] section (it has none)" in error
    bill = bill_devices(contract(), mappings(), [dev(1), other], OCT)
    assert bill.errors == () and bill.notes == (
        "datto node class 'NAS' is named by no mapping: 1 device(s) not billed ('NAS-5'); add NAS = \"workstation\" "
        "(or another class) in a new [datto] section of mappings/device_classes.toml to bill it",)


def test_node_class_mapped_to_a_class_the_tier_does_not_price_stays_excluded_not_an_error():
    bill = bill_devices(contract(), mappings(), [dev(1, "NMS_PRINTER"), dev(2, "NMS_SWITCH")], OCT)
    assert bill.errors == () and bill.lines == ()
    assert [(e.source_id, e.reason) for e in bill.excluded] == [
        ("1", "class 'printer' is not billed by tier Gold"), ("2", "class 'network' is not billed by tier Gold")]


def test_device_not_counted_is_excluded_whatever_its_node_class():
    bill = bill_devices(contract(), mappings(), [dev(1, None, approval="pending"), dev(2, "ANDROID", seen=None)], OCT)
    assert bill.errors == () and [e.source_id for e in bill.excluded] == ["1", "2"]


@pytest.mark.parametrize("field, value, problem", [
    ("created_at", datetime(2026, 1, 1), "created 2026-01-01T00:00:00 has no time zone"),
    ("last_contact", datetime(2026, 10, 15), "last contact 2026-10-15T00:00:00 has no time zone"),
    ("last_contact", "2026-10-15", "last contact '2026-10-15' is not a date and time"),
])
def test_device_whose_dates_cannot_be_compared_is_an_error_naming_it(field, value, problem):
    from dataclasses import replace
    bad = replace(dev(9), **{field: value})
    bill = bill_devices(contract(proration=True), mappings(), [dev(1), bad], OCT)
    assert [l.quantity for l in bill.lines] == ["1"]
    assert bill.errors == (f"device 'PC-9' (ninjaone id 9): {problem}, so whether it counts for 2026-10 cannot be "
                           f"decided; correct its mapping in the ninjaone plugin. It is not billed",)
    assert bill_devices(contract(), mappings(), [replace(bad, approval_status="pending")], OCT).errors == ()


def test_unknown_tier_is_an_error_on_the_bill_not_an_exception():
    bill = bill_devices(contract("diamond"), mappings(), [dev(1)], OCT)
    assert bill.lines == () and bill.client_id == "acme" and bill.period == "2026-10"
    assert bill.errors == ("contract of acme (mappings) names tier 'diamond', which mappings/tiers.toml does not "
                           "define; define [tiers.diamond] or name one of gold, platinum, silver. Its devices are "
                           "not billed",)


def test_unknown_addon_is_an_error_the_tier_is_still_billed():
    bill = bill_devices(contract(addons=["archive", "backup"]), mappings(), [dev(1)], OCT)
    assert [l.code for l in bill.lines] == ["tier:gold:workstation", "addon:backup:workstation"]
    assert bill.errors == ("contract of acme names add-on 'archive', which mappings/tiers.toml does not define; "
                           "define [addons.archive] or remove it from the contract. It is not billed",)


def test_tier_that_includes_a_missing_or_circular_tier_is_still_labelled():
    m = mappings()
    m.tiers["loop"] = Tier("loop", "Loop", {"workstation": 100}, frozenset(), "loop2")
    m.tiers["loop2"] = Tier("loop2", "Loop2", {"workstation": 100}, frozenset(), "loop")
    m.tiers["orphan"] = Tier("orphan", "Orphan", {"workstation": 100}, frozenset(), "gone")
    assert "tier Loop (includes Loop2):" in bill_devices(contract("loop"), m, [dev(1)], OCT).lines[0].rule
    assert "tier Orphan:" in bill_devices(contract("orphan"), m, [dev(1)], OCT).lines[0].rule


def test_a_device_with_no_node_class_holds_only_its_client_end_to_end(tmp_path):
    """Against the simulators: the device is named on its client's held invoice, never dropped."""
    from hub.engine import sync_once
    from tests.conftest import Env

    env = Env(tmp_path)
    device = env.ninja.add_device(3, node_class="", name="MYSTERY-1", last_contact=env.ninja.now)
    report = sync_once(env.hub())
    held = [p for p in report.plan if p.status == "held" and p.period == "2026-10" and p.kind == "invoice"]
    assert [p.client_id for p in held] == ["cobalt"]
    assert held[0].reasons == (f"device 'MYSTERY-1' (ninjaone id {device}) has no node class (''), so its billable "
                               f"class cannot be decided; check the device in ninjaone and the node class the "
                               f"ninjaone plugin reads, then sync again. It is not billed",)
    assert f"client cobalt 2026-10: {held[0].reasons[0]}" in report.errors
    pushed = {p["key"].split(":")[1] for p in report.pushed}
    assert "cobalt" not in pushed and {"acme", "elmstreet"} <= pushed


def test_devices_whose_ids_are_not_text_are_still_ordered():
    from dataclasses import replace
    (line,) = bill_devices(contract(), mappings(), [dev(2), replace(dev(1), source_id=1)], OCT).lines
    assert [i["id"] for i in line.items] == [1, "2"]


# --- exact lines, and each record skipped without skipping the ones after it ---


def test_a_tier_line_is_exact():
    (line,) = bill_devices(contract(), mappings(), [dev(2), dev(1)], OCT).lines
    assert line == BillingLine(
        "acme", "2026-10", "tier:gold:workstation", "Gold managed services, workstation (2026-10)", "2", 12000, 24000,
        "EUR", "tier Gold (includes Silver): workstation at 120.00 EUR per device per month; counts devices approved "
        "in the RMM, created on or before the period's end and last seen on or after its start",
        ({"id": "1", "name": "PC-1", "class": "workstation", "weight": "1"},
         {"id": "2", "name": "PC-2", "class": "workstation", "weight": "1"}))


def test_an_addon_line_is_exact_and_a_chain_of_tiers_is_named():
    bill = bill_devices(contract("platinum", addons=["mail", "netmon"], proration=True), mappings(),
                        [dev(1, created=dt(2026, 10, 17)), dev(2, "NMS_SWITCH")], OCT)
    by_code = {l.code: l for l in bill.lines}
    assert by_code["tier:platinum:workstation"].rule.startswith("tier Platinum (includes Gold, Silver): ")
    assert by_code["tier:platinum:workstation"].rule.endswith("; prorated by days from creation (contract option)")
    assert by_code["addon:mail:workstation"] == BillingLine(
        "acme", "2026-10", "addon:mail:workstation", "Email security, workstation (2026-10)", "0.4839", 400, 194, "EUR",
        "add-on Email security: 4.00 EUR per device per month, counting devices of class workstation; prorated by days "
        "from creation (contract option)",
        ({"id": "1", "name": "PC-1", "class": "workstation", "weight": "0.4839"},))
    assert by_code["addon:netmon:network"].amount == 500
    assert [(e.source_id, e.name, e.reason) for e in bill.excluded] == [
        ("2", "PC-2", "class 'network' is not billed by tier Platinum")]
    unprorated = bill_devices(contract(addons=["backup"]), mappings(), [dev(1)], OCT)
    assert [l.rule.endswith("per device per month, counting the devices billed under the tier")
            for l in unprorated.lines if l.code.startswith("addon:")] == [True]
    assert "prorated" not in unprorated.lines[0].rule


@pytest.mark.parametrize("unlisted", ["not_billed", "error"])
def test_a_device_set_aside_never_stops_the_ones_after_it(unlisted):
    devices = [dev(1, approval="pending"), dev(2, "ANDROID"), dev(3, None), dev(4, "NMS_PRINTER"),
               replace(dev(5), last_contact=datetime(2026, 10, 15)), dev(6), dev(7, "WINDOWS_SERVER")]
    bill = bill_devices(contract(), mappings(unlisted=unlisted), devices, OCT)
    assert {l.code: [i["id"] for i in l.items] for l in bill.lines} == {
        "tier:gold:server": ["7"], "tier:gold:workstation": ["6"]}
    assert [(e.source_id, e.name) for e in bill.excluded] == [("1", "PC-1"), ("4", "PC-4")]
    in_error = ["'PC-2'", "'PC-3'", "'PC-5'"] if unlisted == "error" else ["'PC-3'", "'PC-5'"]
    assert [e.split(" ")[2] for e in bill.errors] == ["(ninjaone"] * len(in_error)
    assert [e.split(" ")[1] for e in bill.errors] == in_error
    assert [n.split(":")[0] for n in bill.notes] == (
        [] if unlisted == "error" else ["ninjaone node class 'ANDROID' is named by no mapping"])


def test_an_addon_class_without_price_is_an_error_the_other_classes_are_billed():
    m = mappings()
    m.addons["partial"] = Addon("partial", "Partial", {"workstation": 100}, None, frozenset({"network", "workstation"}))
    bill = bill_devices(contract(addons=["partial"]), m, [dev(1), dev(2, "NMS_SWITCH")], OCT)
    assert "addon:partial:workstation" in {l.code for l in bill.lines}
    assert bill.errors == ("add-on 'partial' has no price for class 'network'; add network = \"0.00\" (or a price) to "
                           "[addons.partial].prices in tiers.toml",)


def test_unknown_tier_bill_is_in_the_contracts_currency():
    c = Contract("acme", "Acme", "diamond", "USD", {"ninjaone": "1"}, file="mappings/contracts.toml")
    bill = bill_devices(c, mappings(), [dev(1)], OCT)
    assert (bill.client_id, bill.period, bill.currency, bill.lines) == ("acme", "2026-10", "USD", ())
    assert bill.errors[0].startswith("contract of acme (mappings/contracts.toml) names tier 'diamond'")


@pytest.mark.parametrize("minimum, total, top_up", [
    (50000, 49999, 1), (50000, 50000, None), (50000, 50001, None),   # at, below, above the minimum
    (1, 0, 1), (0, 0, None), (0, -500, None),                         # no minimum never tops up a credit
])
def test_minimum_tops_up_only_below_it(minimum, total, top_up):
    c = contract(minimum=minimum)
    lines = (BillingLine("acme", "2026-10", "x", "x", "1", total, total, "EUR", "rule"),)
    bill = apply_minimum(Bill("acme", "2026-10", "EUR", lines), c)
    if top_up is None:
        assert bill.lines == lines
    else:
        assert bill.lines[-1] == BillingLine(
            "acme", "2026-10", "minimum", "Monthly minimum top-up (2026-10)", "1", top_up, top_up, "EUR",
            f"contract minimum {minimum // 100}.{minimum % 100:02d} EUR per month; lines total "
            f"{total // 100}.{total % 100:02d} EUR")
        assert bill.total == minimum
