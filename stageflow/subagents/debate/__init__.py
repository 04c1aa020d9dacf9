"""``debate:`` stages: participants argue in rounds, a cheap moderator judges, an ADR records
the decision (see ``runner``)."""
