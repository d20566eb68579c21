"""The new-item path's order: checked, quarantined, logged (durably) before anything is
acknowledged; a request with a refused row keeps nothing; another writer's items count as
known; a log that cannot keep them is reported, never raised."""

from __future__ import annotations

from recsys.data.new_items import ItemLog
from recsys.features.item_ingest import ItemIngestor

GOOD = [{"item_id": "n1", "title": "One"}, {"item_id": "n2", "title": "Two"}]
BAD = {"item_id": "n3", "genres": "Drama"}


def test_a_request_is_kept_whole_or_not_at_all_and_a_file_keeps_its_good_rows(tmp_path):
    log = ItemLog(tmp_path)
    request = ItemIngestor(log).ingest([*GOOD, BAD], whole=True)
    assert request.accepted == [] and [r.reason for r in request.rejected] == ["missing title"]
    assert log.ids() == set() and (tmp_path / "rejected-items.jsonl").exists()
    file = ItemIngestor(log).ingest([*GOOD, BAD], catalog={"n2"})
    assert file.accepted == ["n1"] and file.known == ["n2"] and len(file.rejected) == 1
    other = ItemIngestor(log).ingest([GOOD[0]], whole=True)  # another replica's ingestor
    assert other.accepted == [] and other.known == ["n1"] and not other.pushed
    assert log.ids() == {"n1"}


def test_a_log_path_that_is_a_file_is_reported(tmp_path):
    (tmp_path / "items").write_text("a file where the directory should be")
    result = ItemIngestor(ItemLog(tmp_path / "items")).ingest(GOOD)
    assert result.unavailable and "cannot keep items" in result.reason and not result.accepted
