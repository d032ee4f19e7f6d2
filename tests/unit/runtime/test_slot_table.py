"""cache.SlotTable, the rows that hold every running request's KV slot list, and the scheduler on
top of it: growth keeps every row, a row is given back on finish, abort and retraction."""
from __future__ import annotations

import random

import torch

from radix_runtime.cache.slot_table import SlotTable
from radix_runtime.core.request import SamplingParams
from radix_runtime.scheduler.request import Req
from tests.unit.runtime.test_scheduler import expected, make, req, run_to_end


def test_rows_and_width_grow_and_keep_what_they_hold():
    t = SlotTable(rows=1, width=2)
    rng = random.Random(0)
    want: dict[int, list[int]] = {}
    for _ in range(40):
        if want and rng.random() < 0.3:
            row = rng.choice(sorted(want))
            t.release(row)
            del want[row]
            continue
        row = t.acquire()
        assert row not in want
        want[row] = [rng.randrange(1, 1000) for _ in range(rng.randrange(1, 9))]
        t.write(row, torch.tensor(want[row]))
        rows = sorted(want)
        new = [rng.randrange(1, 1000) for _ in rows]
        t.append(rows, [len(want[r]) for r in rows], torch.tensor(new))
        for r, x in zip(rows, new):
            want[r].append(x)
        assert t.rows_in_use == len(want)
        for r, slots in want.items():
            assert t.data[r, :len(slots)].tolist() == slots


def test_request_kv_slots_are_a_view_of_its_row():
    t = SlotTable(rows=2, width=4)
    r = Req("a", [1, 2, 3], SamplingParams(), slot_table=t)
    assert r.kv_slots.numel() == 0 and r.slot_row < 0
    r.kv_slots = torch.tensor([5, 6, 7])
    assert r.slot_row >= 0 and t.rows_in_use == 1 and r.kv_slots.tolist() == [5, 6, 7]
    r.kv_slots = torch.cat((r.kv_slots, torch.tensor([8, 9, 10])))  # wider than the table was
    assert r.kv_slots.tolist() == [5, 6, 7, 8, 9, 10] and t.data.shape[1] >= 6
    r.kv_slots = r.kv_slots[:0]
    assert r.slot_row < 0 and t.rows_in_use == 0 and r.kv_slots.numel() == 0
    alone = Req("b", [1], SamplingParams())  # outside a scheduler: a table of its own
    alone.kv_slots = torch.tensor([3])
    assert alone.kv_slots.tolist() == [3]


def test_scheduler_from_a_one_row_table_through_retraction_and_abort():
    s = make(pool_size=120, chunk=8, max_running=8, cache=True)
    s.slots = SlotTable(rows=1, width=2)  # every request makes it grow
    s.new_token_ratio = s.init_new_token_ratio = s.min_new_token_ratio = 0.0  # provoke retraction
    prompts = {f"r{i}": [i + 1] * (10 + 7 * i) for i in range(6)}
    for rid, p in prompts.items():
        s.add(req(rid, p, 12))
    finals = run_to_end(s, abort_at={6: ["r5"]})  # run_to_end checks the rows after every step
    assert s.num_retractions_total > 0
    for rid, p in prompts.items():
        want = expected(p, 12)
        got = finals[rid].output_ids
        assert got == (want[:len(got)] if rid == "r5" else want)
    assert finals["r5"].finish_reason["type"] == "abort"
    assert s.slots.rows_in_use == 0 and s.slots.data.shape[0] > 1


def test_a_table_grown_inside_inference_mode_takes_writes_outside_it():
    # A step (inference mode) grows the table; an abort between steps then caches the request's
    # prefix by writing its row, outside inference mode (a server's engine thread died of this).
    t = SlotTable(rows=1, width=2)
    with torch.inference_mode():
        row = t.acquire()
        other = t.acquire()  # rows double
        t.write(row, torch.arange(5))  # width doubles twice
    assert not t.data.is_inference()
    t.write(other, torch.tensor([7, 8, 9]))
    t.append([row], [5], torch.tensor([42]))
    assert t.data[row, :6].tolist() == [0, 1, 2, 3, 4, 42] and t.data[other, :3].tolist() == [7, 8, 9]
