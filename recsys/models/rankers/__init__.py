"""The multi-stage model's rankers: LightGBM with a listwise objective (``gbdt``:
:class:`~recsys.models.rankers.gbdt.GBDTRanker`) and the DCN-v2 network (``dcn``:
:class:`~recsys.models.rankers.dcn.DCNRanker`)."""
